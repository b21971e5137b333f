"""Every bench runs with or without services configured: through `bench.services`."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.services import bench_services
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from tests.harness import ROOT

BENCH = ROOT / "bench"
SERVICE_VARIABLES = {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL"}


def _runnable(path: Path) -> bool:
    """A bench, not a module benches share: it runs as a script."""
    return '__name__ == "__main__"' in path.read_text()


BENCHES = sorted(p for p in BENCH.glob("*.py") if _runnable(p))


def test_the_benches_are_found() -> None:
    names = {p.stem for p in BENCHES}
    assert {"usage", "gateway", "batch", "overhead", "e2e"} <= names


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.stem)
def test_a_bench_gets_its_services_from_the_shared_helper(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "bench.services"
        for alias in node.names
    }
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert "bench_services" in imported and "bench_services" in called, (
        f"{path.name} does not start its services with bench.services.bench_services"
    )
    assert "LocalStack" not in names, f"{path.name} starts services on its own"
    assert not SERVICE_VARIABLES & strings, f"{path.name} reads service addresses on its own"


def test_the_benches_type_check() -> None:
    """Nothing runs the benches in the suite and the project's mypy run leaves bench/ out:
    bench/e2e.py and bench/batch.py passed a bool where `create_key` takes a NewKey."""
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "-p", "bench"], cwd=ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _configure(services: ServiceAddresses, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in services.as_env().items():
        monkeypatch.setenv(name, value)


def test_configured_services_are_used_as_they_are(
    services: ServiceAddresses, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(services, monkeypatch)
    with bench_services(prepared=False, usage_batch_max=7) as bench:
        assert bench.addresses.kafka_bootstrap_servers == services.kafka_bootstrap_servers
        assert bench.addresses.database_url == services.database_url
        assert bench.addresses.redis_url == services.redis_url
        assert bench.settings.usage_batch_max == 7
        env = bench.env(AYUSH_LOG_LEVEL="WARNING")
        assert env["AYUSH_TOPIC_PREFIX"] == bench.settings.topic_prefix
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == services.kafka_bootstrap_servers
        work = bench.work
        assert work.is_dir()
    assert not work.exists(), "the scratch folder of a run that went well is removed"


def test_a_bench_platform_is_never_rate_limited(
    services: ServiceAddresses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench/batch.py drove interactive jobs at thousands a minute with one key; each counts
    its 1,024 default output tokens against the key's tokens a minute (2M by default), so
    on a quick machine the ingress answered 429 and the bench stopped with KeyError: 'id'."""
    _configure(services, monkeypatch)
    with bench_services(prepared=False) as bench:
        for name, value in bench.env().items():
            monkeypatch.setenv(name, value)
        platform = Settings()  # as a platform process reads its environment
    jobs_an_hour = 100 * 3600  # a job every 10 ms, for an hour, on one key
    assert platform.rate_limit_requests_per_min >= jobs_an_hour
    assert platform.rate_limit_tokens_per_min >= jobs_an_hour * (1024 + 100)


def test_routing_bench_prices_auto_against_the_strongest_tier() -> None:
    """bench/routing.py: its workload through `auto` costs less than through the strongest
    tier, and every category reaches the tier its rules name."""
    ran = subprocess.run(
        [sys.executable, str(BENCH / "routing.py"), "--no-ingress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    costs = result["cost_per_1000_requests_usd"]
    assert 0 < costs["auto"] < costs["strongest_tier"], costs
    assert abs(sum(result["share_by_tier"].values()) - 1) < 0.01
    assert result["share_by_category"]["chit_chat"] == {"gpt-4o-mini": 1.0}
    assert result["share_by_category"]["hard_reasoning"].get("o3", 0) > 0
    assert result["rules"].get("prompt_tokens>8000", 0) > 0


def test_notifications_bench_delivers_every_event_and_reports_its_delay(
    services: ServiceAddresses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench/notifications.py: every event reaches the receiver through the worker, and the
    JSON carries the rate, the added delay and the baseline of the same run."""
    _configure(services, monkeypatch)
    ran = subprocess.run(
        [sys.executable, str(BENCH / "notifications.py"), "--events", "20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["delivered"] == result["events"] == 20
    assert result["deliveries_per_s"] > 0 and result["baseline"]["deliveries_per_s"] > 0
    assert 0 < result["added_delay_ms_p50"] <= result["added_delay_ms_p99"]
