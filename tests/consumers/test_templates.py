"""The router's template language: dotted lookups only, types kept for whole placeholders."""

from __future__ import annotations

from consumers.groups.webhook_router.templates import matches, render, render_text

DATA = {
    "payload": {"action": "opened", "issue": {"title": "Crash on start", "number": 7,
                                               "labels": [{"name": "bug"}]}},
    "result": "A short summary.",
}  # fmt: skip


def test_render_fills_paths_and_keeps_types() -> None:
    assert render_text("Summarize: {{ payload.issue.title }}", DATA) == "Summarize: Crash on start"
    assert render("{{ payload.issue.number }}", DATA) == 7
    assert render({"text": "{{result}}", "n": ["#{{ payload.issue.number }}"]}, DATA) == {
        "text": "A short summary.",
        "n": ["#7"],
    }
    assert render_text("{{ payload.issue.labels.0.name }}", DATA) == "bug"
    assert render_text("[{{ payload.nothing.here }}]", DATA) == "[]"


def test_render_cannot_reach_python_objects() -> None:
    assert render_text("{{ payload.__class__ }}", DATA) == ""
    assert render_text("{{ payload.issue.title.upper }}", DATA) == ""
    assert render_text("{{ 1 + 1 }}", DATA) == "{{ 1 + 1 }}"


def test_filter_matches_dotted_fields() -> None:
    assert matches({"action": "opened"}, DATA["payload"])  # type: ignore[arg-type]
    assert matches({"issue.number": 7}, DATA["payload"])  # type: ignore[arg-type]
    assert not matches({"action": "closed"}, DATA["payload"])  # type: ignore[arg-type]
    assert matches({}, DATA["payload"])  # type: ignore[arg-type]
