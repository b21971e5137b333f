"""The routing file: parsing, defaults, aliases and the checks that catch typos early."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from infra.routing.config import load_routing

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "routing.example.toml"


def test_without_a_file_models_go_to_their_family() -> None:
    config = load_routing(None)
    assert config.route_for("gpt-4o").deployments[0].provider == "openai"
    assert config.route_for("claude-sonnet-4").deployments[0].provider == "anthropic"
    assert config.route_for("local-echo").deployments[0].provider == "local"
    assert config.route_for("openai/llama3").deployments[0].model == "llama3"
    assert not config.knows("mystery-model")


def test_the_documented_example_loads() -> None:
    config = load_routing(EXAMPLE)
    smart = config.route_for("smart")
    assert smart.name == "gpt-4o" and smart.fallbacks == ("claude-sonnet",)
    assert [d.weight for d in smart.deployments] == [3.0, 1.0]
    assert smart.deployments[1].max_concurrency == 16
    llama = config.route_for("llama-3.1-8b")
    assert llama.deployments[1].base_url == "http://ollama:11434/v1"
    assert llama.deployments[1].model == "llama3.1:8b"
    assert config.prices["gpt-4o"].output_per_million == Decimal("10.00")
    assert config.retry.max_retry_after_s == 60
    assert "smart" in config.listed() and "gpt-4o" in config.listed()
    gpt5 = config.route_for("gpt-5")
    assert gpt5.deployments[0].api == "responses" and gpt5.context_window == 400000
    assert smart.deployments[0].api == "chat"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('[models."gpt-a"]\nfallbacks = ["nowhere"]\n', "unknown model 'nowhere'"),
        ('[models."a"]\n', "needs deployments with a provider"),
        ('[aliases]\n"b" = "nowhere"\n', "alias 'b'"),
        ('[models."a"]\ndeployments = [{ provider = "smoke" }]\n', "provider must be one of"),
        ('[models."a"]\ndeployments = [{ provider = "openai", weight = 0 }]\n', "positive"),
        ('[models."a"]\ndeployments = [{ provider = "openai", api = "soap" }]\n', "`api`"),
        (
            '[models."a"]\ndeployments = [{ provider = "anthropic", api = "responses" }]\n',
            "needs provider openai",
        ),
        ('[models."gpt-a"]\ncontext_window = -5\n', "`context_window`"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "routing.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=complaint):
        load_routing(path)
