"""A last resort behind pytest-timeout: its SIGALRM exception can land inside a background
asyncio task (which keeps it) instead of the test, and the test then waits on. A test that
runs a minute past its own timeout ends the session, every thread's stack printed: CI fails
fast and says where, instead of running out its time."""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Generator
from typing import IO

import pytest

GRACE_S = 60.0
# The terminal's stderr, duplicated before output capture redirects descriptor 2.
_stderr: IO[str] | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _stderr
    _stderr = os.fdopen(os.dup(sys.__stderr__.fileno()), "w")  # type: ignore[union-attr]


def pytest_unconfigure(config: pytest.Config) -> None:
    faulthandler.cancel_dump_traceback_later()
    if _stderr is not None:
        _stderr.close()


def _timeout_s(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    timeout = _timeout_s(item)
    if timeout > 0 and _stderr is not None:
        faulthandler.dump_traceback_later(timeout + GRACE_S, exit=True, file=_stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
