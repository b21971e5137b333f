"""The README's table of every route and who may call it, made from `access.TABLE`.

`ayush docs` rewrites the part of README.md between the two markers; a test fails
when it no longer matches the table the ingress checks.
"""

from __future__ import annotations

from pathlib import Path

from producers.ingress.access import ANY, TABLE, allows
from producers.ingress.caller import Role

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- access:begin (written by `ayush docs` from producers/ingress/access.py) -->"
END = "<!-- access:end -->"
YES, NO = "✓", "—"
NONE: frozenset[str] = frozenset()

# (column heading, role, whether the key holds the route's permission as a scope)
COLUMNS: tuple[tuple[str, Role, bool], ...] = (
    ("admin", "admin", False),
    ("developer", "developer", False),
    ("service (with the scope)", "service", True),
    ("auditor", "auditor", False),
    ("user", "user", False),
)


def markdown() -> str:
    """The table, one row per (method, path), sorted by path then method."""
    head = ["method", "path", "permission", *(heading for heading, _, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, path in sorted(TABLE, key=lambda row: (row[1], row[0])):
        permission = TABLE[(method, path)]
        cells = [
            YES if allows(role, frozenset({permission}) if scoped else NONE, method, path) else NO
            for _, role, scoped in COLUMNS
        ]
        shown = "any caller" if permission == ANY else f"`{permission}`"
        lines.append("| " + " | ".join([method, f"`{path}`", shown, *cells]) + " |")
    return "\n".join(lines) + "\n"


def with_table(readme: str) -> str:
    """The README text with the table between the markers replaced by the current one."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md lacks the markers {BEGIN!r} … {END!r}")
    return readme[: start + len(BEGIN)] + "\n" + markdown() + readme[end:]


def write_readme(path: Path = README) -> Path:
    path.write_text(with_table(path.read_text()))
    return path
