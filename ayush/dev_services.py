"""The services of a running or stopped `ayush dev`, found from its data folder.

`ayush dev` writes where its Kafka, Postgres, Redis and S3 listen to
`<data dir>/services.json` once they are up, and removes the file when it
stops. Every other `ayush` command run with no service address in its
environment reads that file, so `ayush keys create` works in a second
terminal next to `bash scripts/dev` with nothing exported.

When `ayush dev` is stopped but its data is kept, such a command starts the
services it needs from that data for its own run (`dev_services`), says so on
stderr, and stops them after: a key created then is there when `ayush dev`
starts again. A command that needs only Postgres starts only Postgres.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path

from infra.local_stack import LocalStack, ServiceAddresses
from infra.local_stack.stack import SERVICES
from infra.settings import Settings

FILE = "services.json"
ENCRYPTION_KEYS = "dev-encryption-keys"
POSTGRES = ("postgres",)

# What `for_this_command` started, stopped when the command ends (`stop_started`).
_STARTED = ExitStack()


def record(data_dir: Path, addresses: ServiceAddresses, encryption_keys: str) -> Path:
    """Writes where this dev stack's services listen (readable by its owner only)."""
    path = data_dir / FILE
    body = {"pid": os.getpid(), "addresses": asdict(addresses), "encryption_keys": encryption_keys}
    path.touch(mode=0o600)
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def forget(data_dir: Path) -> None:
    (data_dir / FILE).unlink(missing_ok=True)


def running(data_dir: Path) -> tuple[ServiceAddresses, str] | None:
    """The addresses (and sealing keys) of the dev stack running from `data_dir`, if one is."""
    try:
        body = json.loads((data_dir / FILE).read_text())
        pid = int(body["pid"])
        addresses = ServiceAddresses(**body["addresses"])
        keys = str(body.get("encryption_keys") or "")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):  # left behind by a dev stack that was killed
        return None
    return addresses, keys


def with_dev_services(settings: Settings) -> Settings:
    """`settings` with a running dev stack's services where the environment names none."""
    if _names_services(settings):
        return settings
    found = running(settings.data_dir)
    if found is None:
        return settings
    addresses, keys = found
    settings = addresses.apply(settings)
    if keys and not settings.encryption_keys:
        settings = settings.model_copy(update={"encryption_keys": keys})
    return settings


def kept(data_dir: Path) -> bool:
    """Whether `data_dir` holds a dev stack's data (its database, at least)."""
    return (data_dir / "postgres").is_dir()


@contextmanager
def dev_services(settings: Settings, needs: Collection[str] = SERVICES) -> Iterator[Settings]:
    """`settings` with the services this command needs: the environment's, a running dev
    stack's or, when `ayush dev` is stopped with its data kept, those of `needs` started
    from that data until the block ends. With none of them, `settings` unchanged."""
    found = with_dev_services(settings)
    data_dir = settings.data_dir
    if found is not settings or _names_services(settings) or not kept(data_dir):
        yield found
        return
    print(
        f"starting the stopped dev stack's services from {data_dir} ({', '.join(needs)})"
        " for this command …",
        file=sys.stderr,
        flush=True,
    )
    stack = LocalStack.start(settings, data_dir, only=needs)
    try:
        found = stack.addresses.apply(settings)
        keys = data_dir / ENCRYPTION_KEYS
        if not found.encryption_keys and keys.exists():
            found = found.model_copy(update={"encryption_keys": keys.read_text().strip()})
        yield found
    finally:
        stack.stop()


def for_this_command(settings: Settings, needs: Collection[str] = SERVICES) -> Settings:
    """`dev_services` for a whole `ayush` command: what it starts runs until `stop_started`
    (the command's end, or the process's exit at the latest)."""
    atexit.unregister(stop_started)  # registered once, however often this runs
    atexit.register(stop_started)  # no service left running, however the command ends
    return _STARTED.enter_context(dev_services(settings, needs))


def stop_started() -> None:
    _STARTED.close()


def _names_services(settings: Settings) -> bool:
    return bool(settings.kafka_bootstrap_servers or settings.database_url or settings.redis_url)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
