"""A stream that ends before the vendor said the answer was done is retried, not billed as whole.

The connection can drop mid-answer without an error (a proxy's idle timeout, a
restarted vendor node): the SDKs and our SSE reader then simply see the end.
"""

from __future__ import annotations

import pytest

from infra.errors import TransientError
from infra.providers.anthropic import AnthropicProvider
from infra.providers.base import ChatProvider, ChatRequest, Message
from infra.providers.openai import OpenAIProvider
from tests.fakes.llm import FakeLLMServer
from tests.harness import unique


async def ignore(_: str) -> None:
    return None


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
async def test_a_stream_cut_before_its_finish_is_transient(
    fake_llm: FakeLLMServer, vendor: str
) -> None:
    provider: ChatProvider
    if vendor == "openai":
        provider = OpenAIProvider(api_key="sk-fake", base_url=fake_llm.openai_base_url)
        model = "gpt-fake"
    else:
        provider = AnthropicProvider(api_key="sk-ant-fake", base_url=fake_llm.url)
        model = "claude-fake"
    try:
        whole = await provider.stream_chat(
            ChatRequest(model, [Message("user", unique("whole "))]), ignore
        )
        assert whole.finish_reason == "stop"
        with pytest.raises(TransientError, match="ended before"):
            await provider.stream_chat(
                ChatRequest(f"{model}@cut", [Message("user", unique("cut "))]), ignore
            )
    finally:
        await provider.close()
