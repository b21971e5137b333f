"""OpenAI-compatible vendors by name: a `provider = "mistral"` line fills in URL and key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.errors import PermanentError
from infra.pricing import PriceTable
from infra.providers.base import ChatRequest, Message
from infra.providers.presets import PRESETS
from infra.routing.catalog import ModelCatalog
from infra.routing.config import load_routing
from infra.routing.gateway import Gateway
from tests.fakes.llm import FakeLLMServer
from tests.harness import unique

PRICE = 'price = { input = "1", output = "2" }'


def routing(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


async def no_retry(_: object) -> None:
    return None


def test_a_preset_line_resolves_to_an_openai_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "mk-123")
    text = '[models."mistral-large-latest"]\ndeployments = [{ provider = "mistral" }]\n'
    [d] = load_routing(routing(tmp_path, text)).route_for("mistral-large-latest").deployments
    assert (d.provider, d.preset, d.vendor) == ("openai", "mistral", "mistral")
    assert d.base_url == "https://api.mistral.ai/v1" and d.api_key == "mk-123"
    assert d.model == "mistral-large-latest" and d.label.startswith("mistral:")


@pytest.mark.parametrize(
    ("name", "url", "variable"),
    [
        ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        ("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        ("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
        ("fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
        ("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        ("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
        ("ollama", "http://localhost:11434/v1", None),
    ],
)
def test_every_preset_names_its_url_and_key_variable(
    name: str, url: str, variable: str | None
) -> None:
    assert (PRESETS[name].base_url, PRESETS[name].key_env) == (url, variable)


def test_the_routing_file_overrides_a_presets_url_and_key(tmp_path: Path) -> None:
    text = (
        '[models."llama3.1"]\ndeployments = [{ provider = "ollama", '
        'base_url = "http://gpu-box:11434/v1" }]\n'
        '[models."grok-4"]\ndeployments = [{ provider = "xai", api_key = "xk-file" }]\n'
    )
    config = load_routing(routing(tmp_path, text))
    [ollama] = config.route_for("llama3.1").deployments
    assert ollama.base_url == "http://gpu-box:11434/v1" and ollama.api_key == "not-set"
    [grok] = config.route_for("grok-4").deployments
    assert grok.api_key == "xk-file" and grok.base_url == "https://api.x.ai/v1"


def test_vllm_needs_a_base_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = '[models."qwen"]\ndeployments = [{ provider = "vllm" }]\n'
    monkeypatch.delenv("VLLM_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="`base_url` or VLLM_BASE_URL"):
        load_routing(routing(tmp_path, text))
    monkeypatch.setenv("VLLM_BASE_URL", "http://vllm:8000/v1")
    [d] = load_routing(routing(tmp_path, text)).route_for("qwen").deployments
    assert d.base_url == "http://vllm:8000/v1" and d.preset == "vllm"


def test_azure_fields_on_another_provider_are_refused(tmp_path: Path) -> None:
    text = '[models."m"]\ndeployments = [{ provider = "groq", deployment = "x" }]\n'
    with pytest.raises(ValueError, match="need provider azure"):
        load_routing(routing(tmp_path, text))


def test_an_unknown_provider_lists_the_presets(tmp_path: Path) -> None:
    text = '[models."m"]\ndeployments = [{ provider = "mistrall" }]\n'
    with pytest.raises(ValueError, match="'mistral'"):
        load_routing(routing(tmp_path, text))


async def test_a_preset_call_goes_to_its_url_with_its_key_under_its_name(
    tmp_path: Path, fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gk-live")
    text = f'[models."llama-3.3-70b"]\n{PRICE}\n'
    text += f'deployments = [{{ provider = "groq", model = "gpt-fake", base_url = "{fake.openai_base_url}" }}]\n'  # noqa: E501
    gateway = Gateway(load_routing(routing(tmp_path, text)))
    said = unique("fast ")
    try:
        answer, served = await gateway.chat(
            "llama-3.3-70b", ChatRequest("", [Message("user", said)]), no_retry, no_retry
        )
    finally:
        await gateway.close()
    assert answer.text == f"reply to: {said}" and served.provider == "groq"
    [call] = fake.calls_for(said)
    assert call.headers["Authorization"] == "Bearer gk-live"


async def test_a_preset_without_its_key_variable_is_refused_naming_it(
    tmp_path: Path, fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    text = f'[models."mistral-small"]\n{PRICE}\n'
    text += f'deployments = [{{ provider = "mistral", model = "gpt-fake", base_url = "{fake.openai_base_url}" }}]\n'  # noqa: E501
    gateway = Gateway(load_routing(routing(tmp_path, text)))
    said = unique("keyless ")
    try:
        with pytest.raises(PermanentError, match="MISTRAL_API_KEY"):
            await gateway.chat(
                "mistral-small", ChatRequest("", [Message("user", said)]), no_retry, no_retry
            )
        with pytest.raises(PermanentError, match="MISTRAL_API_KEY"):
            await gateway.embed("mistral-small", ["x"], None, no_retry)
    finally:
        await gateway.close()
    assert fake.calls_for(said) == []  # nothing was sent, least of all OpenAI's key


def test_the_documented_example_has_an_azure_and_a_preset_deployment() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "routing.example.toml"
    config = load_routing(example)
    [az] = config.route_for("gpt-4o-mini-azure").deployments
    assert (az.provider, az.deployment, az.api_version) == ("azure", "mini-prod", "2024-10-21")
    assert config.route_for("gpt-4o-mini").fallbacks == ("gpt-4o-mini-azure",)
    [mistral] = config.route_for("mistral-large-latest").deployments
    assert mistral.vendor == "mistral" and mistral.base_url == "https://api.mistral.ai/v1"


def test_a_preset_model_is_owned_by_its_vendor(tmp_path: Path) -> None:
    text = f'[models."deepseek-chat"]\n{PRICE}\ndeployments = [{{ provider = "deepseek" }}]\n'
    catalog = ModelCatalog(load_routing(routing(tmp_path, text)), PriceTable.load())
    assert catalog.owner("deepseek-chat") == "deepseek"  # /v1/models' owned_by, job labels
