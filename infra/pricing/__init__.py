"""Model prices, shipped as data (prices.toml) and overridable by a file of the same shape.

Cost is a Decimal in USD: money is never a float.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

DEFAULT_TABLE = Path(__file__).with_name("prices.toml")
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    input_per_million: Decimal
    output_per_million: Decimal


class PriceTable:
    def __init__(self, prices: dict[str, Price]) -> None:
        self._prices = prices

    @classmethod
    def load(cls, *paths: Path | None) -> PriceTable:
        """The shipped table, then each given file on top of it."""
        prices: dict[str, Price] = {}
        for path in (DEFAULT_TABLE, *paths):
            if path is None:
                continue
            data = tomllib.loads(path.read_text())
            for model, row in data.get("models", {}).items():
                prices[model] = Price(Decimal(str(row["input"])), Decimal(str(row["output"])))
        return cls(prices)

    def names(self) -> list[str]:
        return sorted(self._prices)

    def with_prices(self, overrides: dict[str, Price]) -> PriceTable:
        """This table with some models' prices replaced (the routing file's)."""
        return PriceTable({**self._prices, **overrides})

    def price(self, model: str) -> Price | None:
        """Exact name first, then the longest listed prefix (dated snapshots share a price)."""
        if model in self._prices:
            return self._prices[model]
        name = model.split("/", 1)[-1]
        best = max((m for m in self._prices if name.startswith(m)), key=len, default=None)
        return self._prices[best] if best else None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> Decimal:
        price = self.price(model)
        if price is None:
            return Decimal("0")
        total = (
            price.input_per_million * input_tokens + price.output_per_million * output_tokens
        ) / MILLION
        return total.quantize(Decimal("0.00000001"))
