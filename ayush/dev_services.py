"""The services of a running `ayush dev`, found from its data folder.

`ayush dev` writes where its Kafka, Postgres, Redis and S3 listen to
`<data dir>/services.json` once they are up, and removes the file when it
stops. Every other `ayush` command run with no service address in its
environment reads that file, so `ayush keys create` works in a second
terminal next to `bash scripts/dev` with nothing exported.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from infra.local_stack import ServiceAddresses
from infra.settings import Settings

FILE = "services.json"


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
    if settings.kafka_bootstrap_servers or settings.database_url or settings.redis_url:
        return settings
    found = running(settings.data_dir)
    if found is None:
        return settings
    addresses, keys = found
    settings = addresses.apply(settings)
    if keys and not settings.encryption_keys:
        settings = settings.model_copy(update={"encryption_keys": keys})
    return settings


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
