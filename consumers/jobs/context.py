"""Fitting a conversation's history to the model's context window.

`fit` keeps what must be sent (the system/instructions messages and the
newest turn) and, with `truncation="auto"` (OpenAI's name), drops the oldest
turns whole until the input and the room for the answer fit the window. A
turn is a user message and the assistant and tool messages after it, so a
tool result is never sent without the assistant message that called the tool.
With `"disabled"`, or when even the newest turn alone does not fit, the
request is refused with ContextTooLong (400 `context_length_exceeded`).
Token counts are the tokenizer's estimate (infra.providers.tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from infra.errors import ContextTooLong
from infra.providers import tokens
from infra.providers.base import Message

Truncation = Literal["auto", "disabled"]
# Room kept for the answer when the request names no max_output_tokens: this
# many tokens, or a quarter of a smaller window.
OUTPUT_RESERVE = 4096
INSTRUCTION_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True)
class Fitted:
    messages: list[Message]  # what to send, in the original order
    dropped: int  # messages left out (whole turns)
    input_tokens: int  # the estimate of what is sent


def fit(
    messages: Sequence[Message],
    window: int | None,
    max_output_tokens: int | None,
    *,
    truncation: Truncation,
    model: str | None = None,
    overhead: int = 0,
) -> Fitted:
    """The messages to send to a model of `window` tokens (None: unknown, sent as they are).

    `overhead` counts what the request sends beside its messages (tool
    definitions, an answer schema); `model` names the model in the error.
    """
    counts = tokens.estimate_messages(messages)
    fixed = tokens.REPLY_PRIMING + overhead
    total = fixed + sum(counts)
    if window is None:
        return Fitted(list(messages), 0, total)
    room = window - output_reserve(window, max_output_tokens)
    if total <= room:
        return Fitted(list(messages), 0, total)
    if truncation != "auto":
        raise ContextTooLong(total, window, model, truncation=truncation)
    turns = _turns(messages)
    kept = set(range(len(messages)))
    for turn in turns[:-1]:  # the newest turn always stays
        kept.difference_update(turn)
        total -= sum(counts[i] for i in turn)
        if total <= room:
            return Fitted([messages[i] for i in sorted(kept)], len(messages) - len(kept), total)
    raise ContextTooLong(total, window, model, truncation=truncation)


def output_reserve(window: int, max_output_tokens: int | None) -> int:
    """The tokens kept free for the answer."""
    if max_output_tokens is not None:
        return max_output_tokens
    return min(OUTPUT_RESERVE, window // 4)


def _turns(messages: Sequence[Message]) -> list[list[int]]:
    """The indexes of the non-instruction messages, grouped in turns, oldest first.

    A turn starts at each user message; what comes before the first one is a
    turn of its own.
    """
    turns: list[list[int]] = []
    for index, message in enumerate(messages):
        if message.role in INSTRUCTION_ROLES:
            continue
        if message.role == "user" or not turns:
            turns.append([])
        turns[-1].append(index)
    return turns
