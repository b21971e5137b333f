"""Money on the wire: USD amounts as plain decimal text with exactly eight decimals.

`str(Decimal)` prints small and zero amounts with an exponent ("0E-8") and
large round ones too ("1E+3"); a reader of JSON, CSV, a header or a terminal
should never have to decode that. Every amount that leaves the platform goes
through `usd_text`, and every model field that holds one is `Usd`. Eight
decimals is the precision amounts are stored and reserved at.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer

DECIMALS = 8


def usd_text(amount: Decimal | int | str) -> str:
    """`amount` as e.g. "0.00000000", "0.00012300", "25.00000000": no exponent, ever."""
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    if not value.is_finite():
        raise ValueError(f"an amount of money must be finite, not {value}")
    text = format(value, f".{DECIMALS}f")
    # A negative amount that rounds to zero is zero.
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


Usd = Annotated[Decimal, PlainSerializer(usd_text, return_type=str)]
