"""CSV for people who open it in a spreadsheet: no cell runs as a formula.

A cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return,
which some spreadsheets skip before reading one of those) is run as a formula
by Excel, LibreOffice and Google Sheets: `=HYPERLINK(...)` in a user id would
be a live link in the tenant's report. Following OWASP's advice on CSV
injection, such text cells get a leading `'` (shown as text, the quote
hidden) and every text cell is quoted, so a separator inside it (`,`, or the
`;` of locales that split on it) never starts a new cell. Numbers are written
as they are: a negative amount stays a number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """The value as a spreadsheet should show it: text that would run as a formula, escaped."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The header and rows as CSV text, every cell through `safe_cell`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([safe_cell(cell) for cell in header])
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    return out.getvalue()
