"""`ayush dev`: the whole platform on one machine, started and stopped together.

A process that dies is restarted (see ayush.supervisor); Ctrl-C stops everything
within seconds, and the next start redoes what was cut short.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import httpx
import typer

from ayush import dev_services
from ayush.groups import GROUPS
from ayush.supervisor import Child, Supervisor, why_exited
from infra.db.engine import Database
from infra.db.migrate import upgrade
from infra.db.tenants import create_api_key, ensure_tenant, find_key_owner
from infra.kafka.admin import create_topics
from infra.local_stack import LocalStack
from infra.settings import Settings
from infra.vault import Vault

DEV_TENANT = "dev"
# How long a process of `ayush dev` lets in-flight work finish when stopped
# (unless AYUSH_SHUTDOWN_DEADLINE_S says otherwise); production keeps 30 s.
DEV_SHUTDOWN_DEADLINE_S = 2


def prepare(settings: Settings) -> None:
    """Migrations and topics: what every fresh set of services needs first."""
    assert settings.database_url is not None
    upgrade(settings.database_url)
    asyncio.run(create_topics(settings))


async def dev_key(settings: Settings, saved: str | None) -> str:
    """The dev tenant's admin key: the saved one while it is valid, else a new one."""
    assert settings.database_url is not None
    db = Database(settings.database_url, pool_size=1)
    try:
        if saved and await find_key_owner(db, saved) is not None:
            return saved
        tenant, _ = await ensure_tenant(db, DEV_TENANT)
        _, plaintext = await create_api_key(db, tenant.id, name="dev", role="admin")
        return plaintext
    finally:
        await db.close()


def _saved_key(key_file: Path) -> str | None:
    return key_file.read_text().strip() if key_file.exists() else None


def _save_key(key_file: Path, key: str) -> None:
    # Restarts reuse the key; the data folder is ignored by git.
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)


def _dev_encryption_keys(key_file: Path) -> str:
    """A local key that seals credentials across restarts; production sets its own."""
    if not key_file.exists():
        key_file.write_text(Vault.new_key_setting("dev1") + "\n")
        key_file.chmod(0o600)
    return key_file.read_text().strip()


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) while the stack was starting."""


def _wait_healthy(
    url: str, child: Child, stopping: Callable[[], bool], deadline_s: float = 120
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if stopping():
            raise Interrupted
        if child.proc.poll() is not None:
            raise RuntimeError(f"the ingress {why_exited(child.proc.returncode)}; see {child.log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the ingress was not ready at {url} within {deadline_s:.0f}s")


def _wait_worker(child: Child, stopping: Callable[[], bool], deadline_s: float = 90) -> None:
    """A worker is ready once it has joined its group (it says so in its log)."""
    marker = f"worker {child.name} ready"
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if stopping():
            raise Interrupted
        if child.proc.poll() is not None:
            raise RuntimeError(
                f"worker {child.name} {why_exited(child.proc.returncode)}; see {child.log}"
            )
        if child.log.exists() and marker in child.log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"worker {child.name} did not join its group within {deadline_s:.0f}s")


def dev_env(settings: Settings, stack: LocalStack, data_dir: Path) -> dict[str, str]:
    """What the processes of `ayush dev` run with: the services' addresses, a local
    sealing key, and a short shutdown deadline (the next start redoes what was cut)."""
    env = {**os.environ, **stack.addresses.as_env()}
    if not settings.encryption_keys:
        env["AYUSH_ENCRYPTION_KEYS"] = _dev_encryption_keys(data_dir / dev_services.ENCRYPTION_KEYS)
    env.setdefault("AYUSH_SHUTDOWN_DEADLINE_S", str(DEV_SHUTDOWN_DEADLINE_S))
    return env


def run_dev(settings: Settings, host: str, port: int, fail_fast: bool = False) -> int:
    started = time.monotonic()
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / ".gitignore").write_text("*\n")
    echo = typer.echo
    echo(f"starting local services in {data_dir.resolve()} …")
    stack = LocalStack.start(settings, data_dir)
    children: Supervisor | None = None
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        settings = stack.addresses.apply(settings)
        prepare(settings)
        key_file = data_dir / "dev-api-key"
        key = asyncio.run(dev_key(settings, _saved_key(key_file)))
        _save_key(key_file, key)
        env = dev_env(settings, stack, data_dir)
        children = Supervisor(env, lambda line: echo(line, err=True), fail_fast=fail_fast)
        # Other `ayush` commands run next to this one find the services here.
        dev_services.record(data_dir, stack.addresses, env.get("AYUSH_ENCRYPTION_KEYS", ""))
        logs = data_dir / "logs"
        logs.mkdir(exist_ok=True)
        url = f"http://{host}:{port}"
        ingress = children.start(
            "ingress", ["ingress", "--host", host, "--port", str(port)], logs / "ingress.log"
        )
        # The ingress first: on a small machine a dozen processes starting at once share
        # its cores, and the ingress is what a client reaches first.
        _wait_healthy(url, ingress, lambda: stopping)
        workers = [
            children.start(group, ["worker", group], logs / f"{group}.log") for group in GROUPS
        ]
        for worker in workers:
            _wait_worker(worker, lambda: stopping)
        elapsed = time.monotonic() - started
        echo("")
        echo(f"Ayush is ready in {elapsed:.1f}s")
        echo(f"  ingress    {url}")
        echo(f"  API key    {key}   (tenant '{DEV_TENANT}', admin)")
        addr = stack.addresses
        echo(f"  kafka      {addr.kafka_bootstrap_servers} ({addr.kafka_flavour})")
        echo(f"  postgres   {addr.database_url}")
        echo(f"  redis      {addr.redis_url}")
        echo(f"  workers    {', '.join(GROUPS)}   logs in {logs}")
        echo("")
        echo("Other `ayush` commands run here find these services by themselves; other tools:")
        exports = stack.addresses.as_env()
        echo("  " + " ".join(f"export {name}={shlex.quote(v)};" for name, v in exports.items()))
        echo("")
        echo("Try it:")
        echo(f"  curl -s -H 'Authorization: Bearer {key}' \\")
        body = '{"kind":"chat","model":"local-echo","messages":[{"role":"user","content":"hi"}]}'
        echo(f"    -d '{body}' \\")
        echo(f"    {url}/v1/jobs")
        echo(f"  curl -N -H 'Authorization: Bearer {key}' {url}/v1/jobs/<id>/events")
        echo("A process that dies is restarted" + (" (no: --fail-fast)." if fail_fast else "."))
        echo("Press Ctrl-C to stop.")
        while not stopping:
            reason = children.check()
            if reason is not None:
                echo(f"error: {reason}; stopping", err=True)
                return 1
            time.sleep(0.2)
        return 0
    except Interrupted:
        return 0
    except (RuntimeError, TimeoutError) as exc:
        echo(f"error: {exc}", err=True)
        return 1
    finally:
        echo("stopping …")
        dev_services.forget(data_dir)
        if children is not None:
            children.stop()
        stack.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
        echo("stopped")
