"""Prices and the model catalog: nothing routable runs free by accident, and names stay bounded."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from infra.embeddings import minilm
from infra.errors import ModelNotPriced, PermanentError, UnknownModel
from infra.pricing import PriceTable
from infra.providers.base import ChatRequest, Message
from infra.routing.catalog import OTHER, ModelCatalog
from infra.routing.config import RoutingConfig, load_routing
from infra.routing.gateway import MAX_DEFAULT_DEPLOYMENTS, Gateway
from infra.settings import Settings
from infra.vectors.factory import build_embedder

FAKE_PRICES = Path(__file__).resolve().parents[1] / "fakes" / "prices.toml"
# Every current model of the families the router takes by default, by the
# names clients send: the shipped table must price each of them.
CURRENT_MODELS = [
    "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-2025-08-07", "gpt-5-chat-latest", "gpt-5.1",
    "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4.1-2025-04-14",
    "gpt-4o", "gpt-4o-2024-05-13", "gpt-4o-2024-08-06", "gpt-4o-2024-11-20",
    "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "chatgpt-4o-latest",
    "gpt-4-turbo", "gpt-4-turbo-2024-04-09", "gpt-4", "gpt-4-0613", "gpt-3.5-turbo",
    "o1", "o1-mini", "o1-pro", "o3", "o3-mini", "o3-pro", "o4-mini", "o4-mini-2025-04-16",
    "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
    "claude-3-haiku-20240307", "claude-3-opus-20240229", "claude-3-opus-latest",
    "claude-3-5-sonnet-20240620", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet-latest",
    "claude-3-5-haiku-20241022", "claude-3-5-haiku-latest",
    "claude-3-7-sonnet-20250219", "claude-3-7-sonnet-latest",
    "claude-sonnet-4-20250514", "claude-sonnet-4-0", "claude-opus-4-20250514", "claude-opus-4-0",
    "claude-opus-4-1-20250805", "claude-opus-4-1", "claude-sonnet-4-5-20250929",
    "claude-sonnet-4-5", "claude-haiku-4-5-20251001", "claude-haiku-4-5",
    "claude-opus-4-5-20251101", "claude-opus-4-5",
    "anthropic/claude-3-opus-latest", "openai/gpt-4o",
]  # fmt: skip


def catalog(routing: str | None = None, tmp_path: Path | None = None) -> ModelCatalog:
    config = RoutingConfig()
    if routing is not None:
        assert tmp_path is not None
        path = tmp_path / "routing.toml"
        path.write_text(routing)
        config = load_routing(path)
    return ModelCatalog(config, PriceTable.load())


def test_unpriced_model_is_refused_not_free() -> None:
    table = PriceTable.load()
    with pytest.raises(ModelNotPriced):
        table.cost("gpt-9-ultra", 1000, 1000)
    with pytest.raises(ModelNotPriced) as refused:
        catalog().check("gpt-9-ultra")
    assert refused.value.code == "model_not_priced" and refused.value.status == 400
    with pytest.raises(UnknownModel):
        catalog().check("mystery-model")


@pytest.mark.parametrize("model", CURRENT_MODELS)
def test_every_current_model_of_the_default_families_is_priced(model: str) -> None:
    models = catalog()
    models.check(model)
    assert models.estimate(model, 1_000_000, 0) > 0


def test_a_variant_is_not_priced_as_its_shorter_namesake() -> None:
    """Prefixes priced new variants wrongly (o3-pro as o3, opus 4.5 as opus 4): exact names only."""
    table = PriceTable.load()
    assert table.cost("o3-pro", 1_000_000, 0) == Decimal("20")
    assert table.cost("claude-opus-4-5", 1_000_000, 0) == Decimal("5")
    for unlisted in (f"gpt-4o-{uuid.uuid4()}", "gpt-5-turbo-max", f"local-{uuid.uuid4()}"):
        assert table.price(unlisted) is None, unlisted


def test_shipped_table_has_no_test_models_and_local_models_are_free() -> None:
    table = PriceTable.load()
    assert table.price("gpt-fake") is None and table.price("claude-fake") is None
    assert table.cost("local-echo", 10_000, 10_000) == 0
    assert table.cost("local-hash", 10_000, 0) == 0


@pytest.mark.parametrize("embedder", ["hashing", "minilm", "openai"])
def test_every_memory_embedder_model_is_routed_and_priced_by_default(embedder: str) -> None:
    """Memory writes and searches are admitted like model calls: an embedder whose model the
    catalog does not know would refuse every one of them (404 model_not_found)."""
    settings = Settings(memory_embedder=embedder)
    model = build_embedder(settings).model
    models = catalog()
    assert models.check(model) == model
    if embedder != "openai":  # ours run on our own CPU
        assert models.estimate(model, 1_000_000, 0) == 0


async def test_the_gateway_serves_the_default_embedder_itself() -> None:
    """`POST /v1/embeddings` with the default memory model gets MiniLM's vectors, not hashes."""
    gateway = Gateway(RoutingConfig())

    async def no_retry(*_: object) -> None:
        raise AssertionError("a local embedder is never retried")

    try:
        ([vector], _), _ = await gateway.embed(
            minilm.MODEL, ["My dog is called Biscuit"], None, no_retry
        )
        [direct] = await minilm.MiniLMEmbedder().embed(["My dog is called Biscuit"])
        assert max(abs(a - b) for a, b in zip(vector, direct, strict=True)) < 1e-5
    finally:
        await gateway.close()


def test_cached_input_is_billed_at_the_cached_price() -> None:
    table = PriceTable.load()
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens.
    assert table.cost("gpt-4o", 1_000_000, 0, cached_input_tokens=400_000) == Decimal("2")
    # No cached price: cached tokens cost what input costs.
    assert table.cost("o1-pro", 1_000_000, 0, cached_input_tokens=500_000) == Decimal("150")


def test_cache_writes_are_billed_at_the_cache_write_price() -> None:
    table = PriceTable.load()
    # claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 cache write per million tokens.
    cost = table.cost(
        "claude-sonnet-4-5",
        2_000_000,
        0,
        cached_input_tokens=500_000,
        cache_write_input_tokens=1_000_000,
    )
    assert cost == Decimal("1.5") + Decimal("0.15") + Decimal("3.75")
    # No cache-write price: written tokens cost what input costs.
    assert table.cost("gpt-4o", 1_000_000, 0, cache_write_input_tokens=1_000_000) == Decimal("2.5")


def test_every_claude_row_prices_cache_writes_at_one_and_a_quarter_input() -> None:
    table = PriceTable.load()
    claude = [name for name in table.names() if name.startswith("claude-")]
    assert claude
    for name in claude:
        price = table.price(name)
        assert price is not None and price.cache_write_per_million is not None, name
        # Within two cents: Anthropic lists Haiku 3's ($0.3125) as $0.30.
        off = price.cache_write_per_million - price.input_per_million * Decimal("1.25")
        assert abs(off) <= Decimal("0.02"), name


def test_routing_file_prices_or_frees_a_model_on_purpose(tmp_path: Path) -> None:
    models = catalog(
        """
[aliases]
"house" = "llama-house"

[models."llama-free"]
free = true
deployments = [{ provider = "openai", base_url = "http://vllm:8000/v1", model = "llama3" }]

[models."llama-house"]
price = { input = "0.20", output = "0.40" }
deployments = [{ provider = "openai", base_url = "http://vllm:8000/v1", model = "llama3" }]

[models."llama-unpriced"]
deployments = [{ provider = "openai", base_url = "http://vllm:8000/v1", model = "llama3" }]

[models."mini-elsewhere"]
deployments = [{ provider = "openai", base_url = "http://proxy/v1", model = "gpt-4o-mini" }]

[models."falls-to-unpriced"]
fallbacks = ["llama-unpriced"]
deployments = [{ provider = "openai", model = "gpt-4o" }]

[prices]
"openai/llama3" = { free = true }
""",
        tmp_path,
    )
    assert models.estimate("llama-free", 10**6, 10**6) == 0
    assert models.estimate("house", 10**6, 10**6) == Decimal("0.6")
    # Without a price of its own, a model costs what its upstream does.
    assert models.estimate("mini-elsewhere", 10**6, 0) == Decimal("0.15")
    assert models.estimate("openai/llama3", 10**6, 0) == 0
    for refused in ("llama-unpriced", "falls-to-unpriced", "openai/mistral", "local-gpu"):
        with pytest.raises(ModelNotPriced):
            models.check(refused)
    listed = models.names()
    assert {"llama-free", "house", "gpt-4o", "claude-sonnet-4-5", "local-echo"} <= set(listed)
    assert "llama-unpriced" not in listed and "falls-to-unpriced" not in listed


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('[models."gpt-a"]\nfree = true\nprice = { input = "1" }\n', "not both"),
        ('[models."gpt-a"]\nfree = "yes"\n', "can only be true"),
        ('[prices]\n"a" = { output = "1" }\n', "needs `input`"),
        ('[prices]\n"a" = { input = "-1" }\n', "negative"),
        ('[prices]\n"a" = { free = true, input = "1" }\n', "free model"),
    ],
)
def test_price_mistakes_are_named(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "routing.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=complaint):
        load_routing(path)


def test_metric_labels_are_bounded(tmp_path: Path) -> None:
    models = catalog(
        '[models."house"]\nfree = true\n'
        'deployments = [{ provider = "openai", base_url = "http://h/v1", model = "llama3" }]\n',
        tmp_path,
    )
    assert models.label("house") == "house" and models.label("llama3") == "llama3"
    assert models.label("gpt-4o") == "gpt-4o"
    assert models.label("anthropic/claude-3-opus-latest") == "claude-3-opus-latest"
    labels = {models.label(f"{family}{uuid.uuid4()}") for family in ("local-", "openai/", "gpt-")}
    assert labels == {OTHER}


async def test_router_state_stays_bounded_for_many_model_names(tmp_path: Path) -> None:
    """Even names an operator priced by a `*` row do not each keep router state for good."""
    prices = tmp_path / "prices.toml"
    prices.write_text('[models]\n"local-*" = { free = true }\n')
    gateway = Gateway(
        RoutingConfig(), catalog=ModelCatalog(RoutingConfig(), PriceTable.load(prices))
    )
    request = ChatRequest(model="", messages=[Message(role="user", content="hi")])

    async def nothing(_: object) -> None:
        return None

    try:
        for _ in range(MAX_DEFAULT_DEPLOYMENTS + 200):
            with pytest.raises(PermanentError):  # the local provider has no such model
                await gateway.chat(f"local-{uuid.uuid4()}", request, nothing, nothing)
        live = len(gateway._live) + len(gateway._default_live)
        assert live <= MAX_DEFAULT_DEPLOYMENTS
    finally:
        await gateway.close()


def test_context_windows_come_from_the_price_table_and_the_routing_file(tmp_path: Path) -> None:
    routing = tmp_path / "routing.toml"
    routing.write_text(
        '[models."big"]\ncontext_window = 9000\n'
        'deployments = [{ provider = "openai", model = "gpt-4o" }]\n'
        '[models."mine"]\ndeployments = [{ provider = "openai", model = "gpt-4.1" }]\n'
    )
    catalog = ModelCatalog(load_routing(routing), PriceTable.load(FAKE_PRICES))
    assert catalog.context_window("gpt-4o") == 128000
    assert catalog.context_window("openai/gpt-5") == 400000
    assert catalog.context_window("claude-sonnet-4-20250514") == 200000
    assert catalog.context_window("big") == 9000  # the routing file's figure wins
    assert catalog.context_window("mine") == 1047576  # its upstream model's
    assert catalog.context_window("gpt-fake@tool") == 4000
    assert catalog.context_window("gpt-fake-tiny") == 1000
    assert catalog.context_window("local-echo") is None  # unknown: nothing is fitted
    assert catalog.context_window("mystery") is None
