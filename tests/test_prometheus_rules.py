"""deploy/prometheus/alerts.yaml: valid for promtool, its unit tests pass, and it only
queries series that Ayush exports (or records itself)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from infra.telemetry.metrics import Metrics
from tests.harness import ROOT

RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"
# The first run builds promtool from source (minutes); later runs find it in the cache.
BUILD_TIMEOUT_S = 900

# The series one metric of each type shows in the text exposition.
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
}  # fmt: skip


@pytest.fixture(scope="module")
def promtool() -> Path:
    """The cached promtool, built on first use. No Go is a failure, not a skip: CI checks it."""
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "promtool"), "--build"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    if built.returncode != 0:
        pytest.fail(f"promtool is not available:\n{built.stderr[-4000:]}", pytrace=False)
    return Path(built.stdout.strip().splitlines()[-1])


def run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, cwd=RULES.parent
    )


@pytest.mark.timeout(BUILD_TIMEOUT_S + 60)
def test_alert_rules_pass_promtool_check(promtool: Path) -> None:
    checked = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@pytest.mark.timeout(BUILD_TIMEOUT_S + 60)
def test_alerts_fire_on_their_series_and_stay_quiet_on_steady_traffic(promtool: Path) -> None:
    tested = run(promtool, "test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert has a test in which it fires and one in which it stays quiet.
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for alert in alert_rules():
        name = alert["alert"]
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), name
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), name


def test_alert_rules_query_only_exported_or_recorded_series() -> None:
    exported = exported_series()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        used = series_in(rule["expr"])
        unknown = used - exported - recorded
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: {sorted(unknown)}"
        assert "alert" not in rule or used & exported, f"{rule['alert']} queries no Ayush series"


def test_series_names_are_read_from_expressions() -> None:
    expr = (
        'sum by (provider, le) (rate(ayush_x_bucket{outcome="ok",le=~"1|+Inf"}[10m] offset 1h))'
        " > on (provider) group_left ayush:budget:24h unless ayush_y_total"
    )
    assert series_in(expr) == {"ayush_x_bucket", "ayush:budget:24h", "ayush_y_total"}


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def exported_series() -> set[str]:
    """Every series name a fresh Metrics() shows, read from its text exposition."""
    families = text_string_to_metric_families(Metrics().exposition().decode())
    names = {f.name + suffix for f in families for suffix in SAMPLE_SUFFIXES[f.type]}
    assert "ayush_provider_errors_total" in names and "ayush_consumer_lag" in names
    return names


def series_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a small reader, enough for these rules)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # label values, strings
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)  # matchers, ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text)
    return {n for n in names if n.lower() not in PROMQL_WORDS}
