"""Model prices, shipped as data (prices.toml) and overridable by a file of the same shape.

Cost is a Decimal in USD: money is never a float. A model without a price has
no cost of zero: `cost` refuses it (ModelNotPriced), so unpriced work never
runs for free by accident. Free models say so (`free = true`).

A name matches a row of the table when it is the row's name exactly (dated
snapshots are rows of their own: a vendor may price them differently), or
starts with the part before a row's trailing `*` (an operator's own family,
on purpose). A provider prefix (`openai/`, `anthropic/`, `local/`) is looked
up as itself first, then without it. So the names a table accepts are as
many as its rows, unless a row says otherwise.

A row may also give the model's `context_window` (tokens of input plus
output), found by the same lookup as its price.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from infra.errors import ModelNotPriced

DEFAULT_TABLE = Path(__file__).with_name("prices.toml")
MILLION = Decimal(1_000_000)
# The router's explicit forms: "anthropic/claude-3-opus-latest" costs what its model does.
PROVIDER_PREFIXES = ("openai", "anthropic", "local", "bedrock", "gemini")


@dataclass(frozen=True)
class Price:
    input_per_million: Decimal
    output_per_million: Decimal
    # Input tokens the vendor read from its prompt cache; None: billed as input.
    cached_input_per_million: Decimal | None = None
    # Input tokens the vendor wrote to its prompt cache (Anthropic); None: billed as input.
    cache_write_per_million: Decimal | None = None

    @property
    def free(self) -> bool:
        return not self.input_per_million and not self.output_per_million


FREE = Price(Decimal("0"), Decimal("0"))


def parse_price(row: dict[str, Any]) -> Price:
    """A row of a price table: `{input, output[, cached_input, cache_write_input]}` or
    `{free = true}`."""
    if not isinstance(row, dict):
        raise ValueError(f"a price is a table like {{ input = ..., output = ... }}, not {row!r}")
    if row.get("free") is True:
        if any(k in row for k in ("input", "output", "cached_input", "cache_write_input")):
            raise ValueError("a free model has no input or output price")
        return FREE
    if "input" not in row:
        raise ValueError("a price needs `input` (USD per 1M tokens) or `free = true`")
    cached, written = row.get("cached_input"), row.get("cache_write_input")
    price = Price(
        Decimal(str(row["input"])),
        Decimal(str(row.get("output", "0"))),
        Decimal(str(cached)) if cached is not None else None,
        Decimal(str(written)) if written is not None else None,
    )
    amounts = (
        price.input_per_million,
        price.output_per_million,
        price.cached_input_per_million,
        price.cache_write_per_million,
    )
    if any(amount is not None and amount < 0 for amount in amounts):
        raise ValueError("prices cannot be negative")
    return price


def parse_context_window(value: Any) -> int:
    """A `context_window`: a positive whole number of tokens."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`context_window` must be a positive whole number, not {value!r}")
    return value


class PriceTable:
    def __init__(self, prices: dict[str, Price], windows: dict[str, int] | None = None) -> None:
        self._prices = prices
        # Rows' context windows, by row name.
        self._windows = windows or {}
        self._wildcards = sorted(
            (name[:-1] for name in prices if name.endswith("*")), key=len, reverse=True
        )

    @classmethod
    def load(cls, *paths: Path | None) -> PriceTable:
        """The shipped table, then each given file on top of it."""
        prices: dict[str, Price] = {}
        windows: dict[str, int] = {}
        for path in (DEFAULT_TABLE, *paths):
            if path is None:
                continue
            data = tomllib.loads(Path(path).read_text())
            for model, row in data.get("models", {}).items():
                try:
                    prices[model] = parse_price(row)
                    windows.pop(model, None)  # a later file's row replaces the whole row
                    if "context_window" in row:
                        windows[model] = parse_context_window(row["context_window"])
                except (TypeError, ValueError, ArithmeticError) as exc:
                    raise ValueError(f"price table {path}: model {model!r}: {exc}") from exc
        return cls(prices, windows)

    def names(self) -> list[str]:
        """The models listed by name (rows ending in `*` stand for families, not names)."""
        return sorted(n for n in self._prices if not n.endswith("*"))

    def with_prices(self, overrides: dict[str, Price]) -> PriceTable:
        """This table with some models' prices replaced (the routing file's)."""
        return PriceTable({**self._prices, **overrides}, self._windows)

    def row(self, model: str) -> str | None:
        """The name of the row that prices `model`, if any."""
        found = self._row(model)
        provider, _, name = model.partition("/")
        if found is None and name and provider in PROVIDER_PREFIXES:
            found = self._row(name)
        return found

    def _row(self, model: str) -> str | None:
        if model in self._prices:
            return model
        for prefix in self._wildcards:
            if model.startswith(prefix):
                return prefix + "*"
        return None

    def context_window(self, model: str) -> int | None:
        """The tokens of input plus output the model takes, if its row says."""
        found = self.row(model)
        return self._windows.get(found) if found is not None else None

    def price(self, model: str) -> Price | None:
        found = self.row(model)
        return self._prices[found] if found is not None else None

    def cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_input_tokens: int = 0,
    ) -> Decimal:
        """USD for a call; ModelNotPriced for a model the table has no price for."""
        price = self.price(model)
        if price is None:
            raise ModelNotPriced(model)
        return cost_at(
            price, input_tokens, output_tokens, cached_input_tokens, cache_write_input_tokens
        )


def cost_at(
    price: Price,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    cache_write_input_tokens: int = 0,
) -> Decimal:
    """`cached_input_tokens` (read from the vendor's prompt cache) and
    `cache_write_input_tokens` (written to it) are part of `input_tokens`, each billed at
    its own price where the row has one, else as input."""
    cached = min(cached_input_tokens, input_tokens) if price.cached_input_per_million else 0
    written = (
        min(cache_write_input_tokens, input_tokens - cached)
        if price.cache_write_per_million is not None
        else 0
    )
    total = (
        price.input_per_million * (input_tokens - cached - written)
        + (price.cached_input_per_million or Decimal(0)) * cached
        + (price.cache_write_per_million or Decimal(0)) * written
        + price.output_per_million * output_tokens
    ) / MILLION
    return total.quantize(Decimal("0.00000001"))
