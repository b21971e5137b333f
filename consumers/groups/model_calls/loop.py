"""The tool loop: the model calls built-in tools, the worker runs them, the model goes on.

model -> its calls of built-in tools, each run (tools.py) -> their results as
`tool` messages -> the model again, until an answer that calls none of them,
or `tool_step_limit` model calls (then the job fails with `tool_step_limit`).
Calls of tools the caller defined go back to the caller, as without the loop.
Each run is a `tool` entry on the job's stream; the answer's usage and cost
are those of every model call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from consumers.groups.model_calls.answers import priced
from consumers.groups.model_calls.ports import Ports
from consumers.groups.model_calls.tools import Toolbox, ToolRun
from infra.db.jobs import Outcome
from infra.errors import PermanentError
from infra.providers.base import ChatRequest, Completion, Message, ToolCall
from infra.routing.gateway import Served
from schemas import jobs as job_events
from schemas.envelope import Envelope

Ask = Callable[[ChatRequest], Awaitable[tuple[Completion, Served]]]


class ToolStepLimit(PermanentError):
    """The model still called built-in tools at the job's last allowed model call;
    `spent`: the tokens and cost of the calls made, billed though the job fails."""

    code = "tool_step_limit"

    def __init__(self, message: str, spent: Outcome) -> None:
        super().__init__(message)
        self.spent = spent


class ToolsNeedUser(PermanentError):
    """Built-in tools act on a user's things: a job without a user cannot offer them."""

    code = "tool_needs_user"


async def converse(
    raw: Envelope[job_events.JobRequested],
    chat: ChatRequest,
    box: Toolbox,
    ask: Ask,
    ports: Ports,
    running: Awaitable[None],
) -> Outcome:
    """The job's answer after as many steps as the model takes (`ask` calls it once)."""
    request = raw.payload
    user_id = request.job.user_id
    if user_id is None:
        raise ToolsNeedUser("built-in tools act for a user: the job names none")
    limit = ports.settings.tool_step_limit
    chat = replace(chat, tools=(*chat.tools, *box.tools))
    messages = list(chat.messages)
    spent: list[Outcome] = []
    for step in range(1, limit + 1):
        completion, served = await ask(replace(chat, messages=messages))
        outcome = priced(
            request,
            served,
            ports,
            completion.text,
            completion.finish_reason,
            completion.input_tokens,
            completion.output_tokens,
            _wire(completion.tool_calls) or None,
            completion.cached_input_tokens,
            completion.cache_write_input_tokens,
        )
        spent.append(outcome)
        mine = [c for c in completion.tool_calls if box.owns(c)]
        if not mine:
            return _total(outcome, spent)
        if step == limit:
            raise ToolStepLimit(
                f"the model still called tools after {limit} model calls (AYUSH_TOOL_STEP_LIMIT)",
                _total(outcome, spent),
            )
        messages.append(Message("assistant", completion.text, tuple(completion.tool_calls)))
        for call in mine:
            run = ToolRun(raw.tenant_id, user_id, request.job_id, step, call, ports)
            result = await box.run(run)
            messages.append(Message("tool", result.content, (), call.id))
            await running  # the "running" entry comes first on the stream
            # Off the reply channel (like status entries): a waiting caller reads the answer.
            await ports.streams.append(
                request.job_id,
                "tool",
                {
                    "step": step,
                    "name": call.name,
                    "call_id": call.id,
                    "ok": result.ok,
                    "summary": result.summary,
                },
            )
        theirs = [c for c in completion.tool_calls if not box.owns(c)]
        if theirs:  # the caller runs its own tools: the answer goes back to it
            return _total(replace(outcome, tool_calls=_wire(theirs)), spent)
    raise AssertionError("unreachable: the last step returns or raises")


def _wire(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]


def _total(last: Outcome, spent: list[Outcome]) -> Outcome:
    """The last answer, with the tokens and cost of every model call of the job."""
    return replace(
        last,
        input_tokens=sum(o.input_tokens for o in spent),
        output_tokens=sum(o.output_tokens for o in spent),
        cost_usd=sum((o.cost_usd for o in spent), last.cost_usd * 0),
        cached_input_tokens=sum(o.cached_input_tokens for o in spent),
        cache_write_input_tokens=sum(o.cache_write_input_tokens for o in spent),
    )
