"""AWS Bedrock's runtime through aioboto3: Converse and ConverseStream for chat,
InvokeModel for embeddings. The only home of the Bedrock runtime client.

Configured by the AWS variables, as botocore reads them: credentials
(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, AWS_PROFILE, or
an instance role) signed with SigV4 by botocore; the region from the
deployment (`region`), else AWS_REGION, else AWS_DEFAULT_REGION; the endpoint
from the deployment (`base_url`), else AWS_ENDPOINT_URL_BEDROCK_RUNTIME (or
AWS_ENDPOINT_URL), which botocore honours, else Bedrock's own.

One client per deployment, opened on first use, kept open, closed by `close`.
botocore does not retry (the gateway does); every error leaves as
TransientError or PermanentError.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import aioboto3
import aiohttp
from botocore.config import Config
from botocore.eventstream import ParserError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)

from infra.errors import PermanentError, TransientError
from infra.providers import tokens
from infra.providers.base import ChatRequest, Completion, Message, OnDelta, ToolCall
from infra.providers.bedrock_wire import converse_params, finish_reason, streams_tools, usage_counts
from infra.providers.http_errors import from_status, retry_after_seconds

# Bedrock's error codes worth another try (its docs: "retry your request").
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "ModelNotReadyException",
        "InternalServerException",
        "ModelTimeoutException",
        "ModelStreamErrorException",
        "ServiceQuotaExceededException",
    }
)
# ... and those no retry can help (besides any other 4xx).
PERMANENT_CODES = frozenset(
    {
        "ValidationException",
        "AccessDeniedException",
        "ResourceNotFoundException",
        "UnrecognizedClientException",
        "ModelErrorException",
    }
)


def region_of(region: str | None) -> str:
    found = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not found:
        raise PermanentError(
            "bedrock: no region: give the deployment a `region` or set AWS_REGION", status=500
        )
    return found


class BedrockRuntime:
    """One `bedrock-runtime` client, opened on first use and kept until `close`."""

    def __init__(
        self,
        *,
        name: str = "bedrock",
        region: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self.name = name
        self._region = region
        self._endpoint = base_url
        self._config = Config(
            connect_timeout=min(10.0, timeout_s),
            read_timeout=timeout_s,
            retries={"total_max_attempts": 1},  # the gateway retries, with its own policy
        )
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._opening = asyncio.Lock()

    async def client(self) -> Any:
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    with self.errors():
                        session = aioboto3.Session()
                        self._client = await self._stack.enter_async_context(
                            session.client(
                                "bedrock-runtime",
                                region_name=region_of(self._region),
                                endpoint_url=self._endpoint,
                                config=self._config,
                            )
                        )
        return self._client

    async def invoke_json(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """InvokeModel with a JSON body; the JSON answer."""
        client = await self.client()
        with self.errors():
            reply = await client.invoke_model(
                modelId=model_id,
                body=json.dumps(body).encode(),
                contentType="application/json",
                accept="application/json",
            )
            async with reply["body"] as stream:
                raw = await stream.read()
        answer = json.loads(raw)
        if not isinstance(answer, dict):
            raise PermanentError(f"{self.name}: {model_id} answered {answer!r:.80}", status=502)
        return answer

    @contextmanager
    def errors(self) -> Iterator[None]:
        """botocore's exceptions, translated into ours."""
        try:
            yield
        except ClientError as exc:
            raise _from_client_error(self.name, exc) from exc
        except (TimeoutError, ReadTimeoutError) as exc:
            raise TransientError(f"{self.name}: timed out", status=504) from exc
        except (ConnectionError, HTTPClientError, aiohttp.ClientError, ParserError) as exc:
            # refused or dropped connections; a stream cut short or garbled in transit
            raise TransientError(f"{self.name}: {type(exc).__name__}: {exc}", status=502) from exc
        except BotoCoreError as exc:  # no credentials, a parameter botocore refuses, ...
            raise PermanentError(f"{self.name}: {type(exc).__name__}: {exc}", status=502) from exc

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


def _from_client_error(vendor: str, exc: ClientError) -> TransientError | PermanentError:
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code") or "")
    code = code[:1].upper() + code[1:]  # an event stream's exceptions: throttlingException
    message = str(error.get("Message") or code or exc)
    status = int(meta.get("HTTPStatusCode") or 0)
    headers = {str(k).lower(): str(v) for k, v in (meta.get("HTTPHeaders") or {}).items()}
    text = f"{vendor} answered {status or ''} {code}: {message}".replace("  ", " ")
    if code in TRANSIENT_CODES:
        return TransientError(text, retry_after=retry_after_seconds(headers), status=status or 503)
    if code in PERMANENT_CODES:
        return PermanentError(text, status=status or 400)
    if status:
        return from_status(vendor, status, f"{code}: {message}" if code else message, headers)
    # An exception inside an event stream carries no status: the stream broke off.
    return TransientError(text, status=502)


class BedrockProvider:
    """Chat on Bedrock's Converse API (streamed with ConverseStream where the model can)."""

    def __init__(
        self,
        *,
        name: str = "bedrock",
        region: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self.name = name
        self.runtime = BedrockRuntime(
            name=name, region=region, base_url=base_url, timeout_s=timeout_s
        )

    async def stream_chat(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        params = converse_params(request)
        client = await self.runtime.client()
        with self.runtime.errors():
            if request.tools and not streams_tools(request.model):
                # Llama, Mistral and others call tools on Converse only, not ConverseStream.
                reply = await client.converse(**params)
                return await _from_reply(reply, on_delta)
            reply = await client.converse_stream(**params)
            stream = reply["stream"]
            try:
                completion = await _from_stream(stream, on_delta)
            finally:
                stream.close()  # the connection, when the stream is left early
        if completion.usage_estimated:  # a stream cut before its metadata event
            answer = Message("assistant", completion.text, completion.tool_calls)
            completion.input_tokens = tokens.count_request(request)
            completion.output_tokens = tokens.count_text(completion.text) + (
                tokens.count_tool_calls(answer)
            )
        return completion

    async def close(self) -> None:
        await self.runtime.close()


async def _from_reply(reply: dict[str, Any], on_delta: OnDelta) -> Completion:
    """A Converse answer, its text reported as one delta."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in reply.get("output", {}).get("message", {}).get("content", []):
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(
                ToolCall(use["toolUseId"], use["name"], json.dumps(use.get("input") or {}))
            )
    text = "".join(texts)
    if text:
        await on_delta(text)
    input_tokens, output_tokens, cached = usage_counts(reply.get("usage") or {})
    return Completion(
        text,
        finish_reason(reply.get("stopReason")),
        input_tokens,
        output_tokens,
        tool_calls=calls,
        cached_input_tokens=cached,
    )


async def _from_stream(stream: AsyncIterator[dict[str, Any]], on_delta: OnDelta) -> Completion:
    """ConverseStream's events: text and tool input arrive as deltas of content blocks."""
    parts: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    usage: dict[str, Any] = {}
    stop_reason: str | None = None
    stopped = False
    async for event in stream:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            use = start.get("start", {}).get("toolUse")
            if use is not None:
                calls[start["contentBlockIndex"]] = {
                    "id": use["toolUseId"],
                    "name": use["name"],
                    "args": "",
                }
        elif "contentBlockDelta" in event:
            block = event["contentBlockDelta"]
            delta = block.get("delta", {})
            if delta.get("text"):
                parts.append(delta["text"])
                await on_delta(delta["text"])
            elif "toolUse" in delta and block["contentBlockIndex"] in calls:
                calls[block["contentBlockIndex"]]["args"] += delta["toolUse"].get("input", "")
        elif "messageStop" in event:
            stopped = True
            stop_reason = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            usage = event["metadata"].get("usage") or {}
    if not stopped:
        # botocore keeps a frame cut short to itself and ends quietly: the answer is partial.
        raise TransientError("bedrock: the stream ended before its messageStop event", status=502)
    tool_calls = [ToolCall(c["id"], c["name"], c["args"] or "{}") for _, c in sorted(calls.items())]
    input_tokens, output_tokens, cached = usage_counts(usage)
    return Completion(
        "".join(parts),
        finish_reason(stop_reason),
        input_tokens,
        output_tokens,
        usage_estimated=not usage,
        tool_calls=tool_calls,
        cached_input_tokens=cached,
    )
