"""The processes `ayush dev` runs: restarted when they die, stopped promptly together.

A worker that dies (a crash, an out-of-memory kill, a `kill -9`) is started
again after a backoff that doubles with each recent death, and the console
says which one died, why, and where its log is. Only a process that keeps
dying (`max_deaths` within `window_s`) stops the whole stack, or the first
death with `fail_fast`. Work a dead worker left unfinished is redone by its
successor: handlers are idempotent and offsets are committed only for
finished events.

Stopping is prompt: SIGTERM to every process, then SIGKILL to whatever still
runs after `stop_deadline_s`. That is right for development only; production
workers keep their shutdown deadline.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Child:
    name: str
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes]
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    restarts: int = 0

    @property
    def running(self) -> bool:
        return self.restart_at is None and self.proc.poll() is None


def why_exited(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _last_line(log: Path) -> str:
    try:
        with log.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 4096))
            lines = handle.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


class Supervisor:
    def __init__(
        self,
        env: dict[str, str],
        echo: Callable[[str], None],
        *,
        fail_fast: bool = False,
        max_deaths: int = 5,
        window_s: float = 60.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        stop_deadline_s: float = 5.0,
        command: tuple[str, ...] = (sys.executable, "-m", "ayush.cli"),
    ) -> None:
        self._env = env
        self._command = command
        self._echo = echo
        self.fail_fast = fail_fast
        self.max_deaths = max_deaths
        self.window_s = window_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stop_deadline_s = stop_deadline_s
        self.children: list[Child] = []

    def start(self, name: str, args: list[str], log: Path) -> Child:
        child = Child(name, args, log, self._spawn(args, log, fresh=True))
        self.children.append(child)
        return child

    def _spawn(self, args: list[str], log: Path, *, fresh: bool) -> subprocess.Popen[bytes]:
        # A fresh log per run (readiness is read from it); a restart appends, so
        # the reason of the death stays readable above the new start.
        handle = log.open("wb" if fresh else "ab")
        try:
            return subprocess.Popen(
                [*self._command, *args],
                env=self._env, stdout=handle, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        finally:
            handle.close()

    def check(self, now: float | None = None) -> str | None:
        """Restart what died and is due; a reason to stop everything, or None."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    with child.log.open("ab") as handle:
                        handle.write(f"--- restarted by ayush dev ({child.name}) ---\n".encode())
                    child.proc = self._spawn(child.args, child.log, fresh=False)
                    child.restart_at = None
                    child.restarts += 1
                continue
            code = child.proc.poll()
            if code is None:
                continue
            why = why_exited(code)
            last = _last_line(child.log) if code > 0 else ""
            detail = f"{why}" + (f": {last}" if last else "")
            child.deaths.append(now)
            while child.deaths and now - child.deaths[0] > self.window_s:
                child.deaths.popleft()
            if self.fail_fast:
                return f"{child.name} {detail} (--fail-fast); log: {child.log}"
            if len(child.deaths) >= self.max_deaths:
                return (
                    f"{child.name} died {len(child.deaths)} times within "
                    f"{self.window_s:.0f}s, last {detail}; log: {child.log}"
                )
            delay = min(self.backoff_initial_s * 2 ** (len(child.deaths) - 1), self.backoff_max_s)
            child.restart_at = now + delay
            self._echo(f"{child.name} {detail}; restarting in {delay:.1f}s; log: {child.log}")
        return None

    def stop(self) -> None:
        """SIGTERM to all, SIGKILL to what still runs after the deadline; returns when
        every process is gone."""
        alive = [c.proc for c in self.children if c.proc.poll() is None]
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_deadline_s
        for proc in alive:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc in alive:
            proc.wait()
