"""Where a machine's CPU goes during a benchmark run, per component (Linux /proc).

A request through Ayush costs CPU in processes the platform does not own: the
broker, Postgres, Redis, the load client, the fake upstream. Throughput on a
small machine is bounded by the sum, so a benchmark reports all of it, next to
what the whole machine spent and left idle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
# Process names of the services, as /proc/<pid>/stat gives them.
_SERVICES = {"java": "kafka", "tansu": "kafka", "postgres": "postgres", "redis-server": "redis"}


def snapshot(roles: Mapping[int, str]) -> dict[str, float]:
    """CPU seconds so far per component; `roles` names processes by pid.

    Processes not named are grouped by service name (Kafka, Postgres, Redis)
    or counted as "other"; "_busy" and "_idle" are the whole machine's.
    """
    seconds: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        pid = int(entry.name)
        role = roles.get(pid) or _SERVICES.get(name, "other")
        seconds[role] = seconds.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    seconds["_idle"] = idle / _TICK
    seconds["_busy"] = (sum(ticks) - idle) / _TICK
    return seconds


def per_request_ms(
    before: Mapping[str, float], after: Mapping[str, float], requests: float
) -> dict[str, float]:
    """CPU milliseconds per request per component between two snapshots."""
    return {
        # A process that ended between the snapshots takes its time with it.
        role.lstrip("_"): round(max(0.0, after[role] - before.get(role, 0.0)) * 1000 / requests, 3)
        for role in sorted(after)
    }
