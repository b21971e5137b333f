"""Child processes that die with their parent and stop cleanly."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to the child if its parent dies, so
    # a killed `ayush dev` leaves no broker behind. Elsewhere this is a no-op.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, deadline_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {deadline_s:.0f}s")


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def spawn(
        cls, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None
    ) -> ManagedProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not the broker
        )
        log.close()
        return cls(name, popen, log_path)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def wait_listening(self, port: int, timeout_s: float, what: str) -> None:
        """Wait until the process listens on `port`; else stop it and raise RuntimeError
        naming `what`, with the end of its log."""
        try:
            wait_for_port(port, timeout_s, self.popen)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{what} did not start: {exc}\n{self.log_tail()}") from exc

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
