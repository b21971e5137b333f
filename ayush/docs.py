"""The committed contract documents: docs/asyncapi.json and docs/openapi.json, and the
README's table of who may call which route.

`ayush docs` rewrites them; a test fails when they no longer match the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ayush.access_table import write_readme
from infra.settings import Settings
from producers.ingress import create_app
from producers.ingress.app import VERSION
from schemas.asyncapi import asyncapi_document

DOCS = Path(__file__).resolve().parents[1] / "docs"


def contract_documents() -> dict[str, dict[str, Any]]:
    return {
        "asyncapi.json": asyncapi_document(VERSION),
        "openapi.json": create_app(Settings()).openapi(),
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_documents(folder: Path = DOCS) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in contract_documents().items():
        path = folder / name
        path.write_text(dumps(document))
        written.append(path)
    if folder == DOCS:  # the project's own docs: its README's access table too
        written.append(write_readme())
    return written
