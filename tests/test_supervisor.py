"""The restarts and the prompt stop of `ayush dev`'s processes, on plain Python processes."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from ayush.supervisor import Supervisor

SLEEPER = (sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)")
CRASHER = (sys.executable, "-c", "import sys; print('boom: no config', flush=True); sys.exit(3)")
STUBBORN = (
    sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('up', flush=True); time.sleep(120)",
)  # fmt: skip


def _until(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _up(log: Path) -> bool:
    return log.exists() and "up" in log.read_text()


def test_a_killed_worker_is_restarted_with_a_line_saying_which_and_why(tmp_path: Path) -> None:
    lines: list[str] = []
    sup = Supervisor(dict(os.environ), lines.append, command=SLEEPER, backoff_initial_s=0.05)
    child = sup.start("model-calls", [], tmp_path / "model-calls.log")
    try:
        _until(lambda: _up(child.log))
        first = child.proc.pid
        os.kill(first, signal.SIGKILL)
        _until(lambda: sup.check() is None and child.restarts == 1)
        assert child.proc.pid != first and child.proc.poll() is None
        assert len(lines) == 1
        assert lines[0].startswith("model-calls killed by SIGKILL; restarting in 0.1s")
        assert str(child.log) in lines[0]
        assert "restarted by ayush dev" in child.log.read_text()  # the log is kept, appended
    finally:
        sup.stop()


def test_a_worker_that_keeps_dying_stops_the_stack(tmp_path: Path) -> None:
    lines: list[str] = []
    sup = Supervisor(dict(os.environ), lines.append, command=CRASHER, max_deaths=3,
                     backoff_initial_s=0.01, backoff_max_s=0.02)  # fmt: skip
    sup.start("usage", [], tmp_path / "usage.log")
    reasons: list[str] = []
    _until(lambda: reasons.append(sup.check() or "") or reasons[-1])
    assert "usage died 3 times" in reasons[-1] and "exited with code 3" in reasons[-1]
    assert "boom: no config" in reasons[-1]  # the log's last line says why
    assert len(lines) == 2 and all("restarting in" in line for line in lines)


def test_fail_fast_stops_at_the_first_death(tmp_path: Path) -> None:
    sup = Supervisor(dict(os.environ), print, command=CRASHER, fail_fast=True)
    sup.start("usage", [], tmp_path / "usage.log")
    reasons: list[str] = []
    _until(lambda: reasons.append(sup.check() or "") or reasons[-1])
    assert "--fail-fast" in reasons[-1] and "exited with code 3" in reasons[-1]


def test_stop_kills_what_ignores_sigterm_after_the_deadline(tmp_path: Path) -> None:
    sup = Supervisor(dict(os.environ), print, command=STUBBORN, stop_deadline_s=1.0)
    children = [sup.start(f"w{i}", [], tmp_path / f"w{i}.log") for i in range(3)]
    _until(lambda: all(_up(c.log) for c in children))
    started = time.monotonic()
    sup.stop()
    assert time.monotonic() - started < 3  # one deadline for all, not one each
    assert all(c.proc.returncode == -signal.SIGKILL for c in children)
