"""A tiny, safe template language: `{{ payload.issue.title }}`, `{{ result }}`.

Only dotted lookups into the given data; no expressions, calls or
attribute access on Python objects, so a tenant's template cannot reach
anything but its own webhook payload and job result.
"""

from __future__ import annotations

import json
import re
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w-]*(?:\.[\w-]+)*)\s*\}\}")
MISSING = object()


def lookup(data: Any, path: str) -> Any:
    current = data
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return MISSING
    return current


def _text(value: Any) -> str:
    if value is MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def render_text(template: str, data: dict[str, Any]) -> str:
    return PLACEHOLDER.sub(lambda m: _text(lookup(data, m.group(1))), template)


def render(value: Any, data: dict[str, Any]) -> Any:
    """Render every string inside `value`.

    A string that is exactly one placeholder keeps the value's own type, so
    `"{{ payload.issue.number }}"` stays a number.
    """
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole:
            found = lookup(data, whole.group(1))
            return None if found is MISSING else found
        return render_text(value, data)
    if isinstance(value, dict):
        return {key: render(item, data) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, data) for item in value]
    return value


def matches(filter_: dict[str, Any], payload: dict[str, Any]) -> bool:
    """Every `dotted.path: value` of the filter equals the payload's value there."""
    return all(lookup(payload, path) == expected for path, expected in filter_.items())
