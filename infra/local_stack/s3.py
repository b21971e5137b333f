"""S3 from moto's server mode: an in-memory S3 API on loopback, no Docker needed."""

from __future__ import annotations

import sys
from pathlib import Path

from infra.local_stack.process import ManagedProcess, free_port


def start_s3(data_dir: Path) -> tuple[ManagedProcess, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = ManagedProcess.spawn("s3", argv, data_dir / "s3.log")
    proc.wait_listening(port, 30, "s3 (moto)")
    return proc, f"http://127.0.0.1:{port}"
