"""An OpenAI-compatible upstream that answers at once, for benchmarks.

Run as its own process (`python -m tests.fakes.instant_upstream PORT`) so it does not share
an interpreter with the load generator. The answers are prepared bytes.
"""

from __future__ import annotations

import sys

import orjson
from aiohttp import web

USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
BASE = {"id": "chatcmpl-bench", "created": 0, "model": "bench"}
WORDS = ["reply", " to", " the", " bench"]


def _sse(data: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return _sse(
        {**BASE, "object": "chat.completion.chunk",
         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    )  # fmt: skip


STREAM = b"".join(
    [
        _chunk({"role": "assistant", "content": ""}),
        *[_chunk({"content": w}) for w in WORDS],
        _chunk({}, "stop"),
        _sse({**BASE, "object": "chat.completion.chunk", "choices": [], "usage": USAGE}),
        b"data: [DONE]\n\n",
    ]
)
WHOLE = orjson.dumps(
    {
        **BASE,
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "".join(WORDS)},
             "finish_reason": "stop"}
        ],
        "usage": USAGE,
    }
)  # fmt: skip


async def chat(request: web.Request) -> web.Response:
    body = await request.read()
    if b'"stream":true' in body.replace(b" ", b""):
        return web.Response(body=STREAM, content_type="text/event-stream")
    return web.Response(body=WHOLE, content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
