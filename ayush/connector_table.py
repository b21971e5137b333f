"""The README's table of connectors and their actions, made from `GET /v1/connectors`'s list
(`infra.connectors.describe`).

`ayush docs` rewrites the part of README.md between the two markers; a test fails when it no
longer matches the list the API serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ayush.access_table import README
from infra.connectors import describe

BEGIN = "<!-- connectors:begin (written by `ayush docs` from GET /v1/connectors) -->"
END = "<!-- connectors:end -->"


def _fields(schema: dict[str, Any]) -> str:
    """`a`, `b?` …: the schema's properties, optional ones marked with `?`."""
    required = set(schema.get("required", []))
    names = [f"`{n}`" if n in required else f"`{n}?`" for n in schema.get("properties", {})]
    return ", ".join(names) or "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(connectors: list[dict[str, Any]] | None = None) -> str:
    """One row per action: its connector, how that authenticates, and the params it takes."""
    head = ["connector", "auth", "credentials", "revoked on delete", "action", "params"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for connector in describe() if connectors is None else connectors:
        # A connector without fixed actions (mcp) acts through the tools its server lists.
        for action in connector["actions"] or [None]:
            cells = [
                f"`{connector['name']}` ({_cell(connector['title'])})",
                connector["auth"],
                _fields(connector["credentials_schema"]),
                _cell(connector["revocation"] or "—"),
                f"`{action['name']}` ({_cell(action['description'])})"
                if action
                else "every tool of the server (`GET /v1/connections/{id}/tools`)",
                _fields(action["params_schema"]) if action else "the tool's arguments",
            ]
            lines.append("| " + " | ".join(cells) + " |")
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
