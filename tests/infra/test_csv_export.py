"""CSV exports: no caller-chosen cell runs as a spreadsheet formula (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from infra.csv_export import csv_text

ATTACKS = ["=HYPERLINK(\"http://x\",\"y\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
           "\t=1+1", "\r=1+1"]  # fmt: skip


def test_formula_cells_are_neutralised_and_numbers_kept() -> None:
    text = csv_text(["user", "events", "cost_usd"], [[a, 1, Decimal("-0.5")] for a in ATTACKS])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["user", "events", "cost_usd"]
    assert [r[0] for r in rows[1:]] == ["'" + a for a in ATTACKS]
    assert all(r[1:] == ["1", "-0.5"] for r in rows[1:])  # numbers are not text: left alone


def test_a_separator_inside_a_cell_never_starts_a_new_cell() -> None:
    # Excel in locales that split on ";" would read `a;=1+1` as two cells, the second a formula.
    text = csv_text(["user"], [["a;=1+1"], ["b,=1+1"], ["plain"]])
    assert text.splitlines() == ['"user"', '"a;=1+1"', '"b,=1+1"', '"plain"']
