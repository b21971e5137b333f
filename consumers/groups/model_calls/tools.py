"""Tools the worker runs for the model: a small registry of tool kinds.

A job names the kinds it enables (`ayush_tools`); each kind offers its tools'
schemas for the job (`schemas`) and runs one call of the model (`run`). The
loop (loop.py) knows nothing of any kind: a new one (a connection's actions,
run as `integration.action.requested` round trips) is one more entry in
`KINDS`. A call's effect must be safe to run again: the job may be redelivered
after a crash, and the model asked again for the same step.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from consumers.groups.model_calls.ports import Ports
from infra.errors import PermanentError
from infra.providers.base import Tool, ToolCall
from schemas import jobs as job_events
from schemas.ids import derived_id


@dataclass(frozen=True)
class ToolRun:
    """One call of a built-in tool: who it acts for, and where in the job it came."""

    tenant_id: uuid.UUID
    user_id: str
    job_id: uuid.UUID
    step: int  # the model call (1, 2, ...) that asked for it
    call: ToolCall
    ports: Ports

    def effect_id(self) -> uuid.UUID:
        """The id of what this call makes: the same when the step is run again."""
        return derived_id(self.job_id, f"tool:{self.step}:{self.call.id}")


@dataclass(frozen=True)
class ToolResult:
    """What goes back to the model (`content`, JSON text) and on the job's stream."""

    content: str
    summary: dict[str, Any] = field(default_factory=dict)
    ok: bool = True


class ToolKind(Protocol):
    """One kind of built-in tools (`tasks`, later a connection's actions).

    `schemas` may read what it offers (a connection's actions) through the ports.
    """

    name: str

    async def schemas(self, job: job_events.ChatJob, ports: Ports) -> Sequence[Tool]: ...

    async def run(self, call: ToolRun) -> ToolResult: ...


class Toolbox:
    """The built-in tools one job offers, by tool name."""

    def __init__(self) -> None:
        self.tools: list[Tool] = []
        self._owner: dict[str, ToolKind] = {}

    def add(self, kind: ToolKind, tools: Sequence[Tool]) -> None:
        for tool in tools:
            if tool.name in self._owner:
                raise PermanentError(f"two built-in tools are named {tool.name}")
            self.tools.append(tool)
            self._owner[tool.name] = kind

    def __bool__(self) -> bool:
        return bool(self._owner)

    def owns(self, call: ToolCall) -> bool:
        return call.name in self._owner

    async def run(self, call: ToolRun) -> ToolResult:
        return await self._owner[call.call.name].run(call)


async def toolbox(kinds: Mapping[str, ToolKind], job: job_events.ChatJob, ports: Ports) -> Toolbox:
    """The tools of the kinds `job` enables (none for a job that enables none)."""
    box = Toolbox()
    for name in job.ayush_tools or ():
        if name in kinds:
            box.add(kinds[name], await kinds[name].schemas(job, ports))
    return box
