"""compose.yaml: valid by the Compose Specification schema, and complete for Ayush."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft201909Validator

from ayush.groups import GROUPS, REPLAY_GROUPS
from tests.harness import ROOT


def load_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_file_matches_the_compose_spec() -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    errors = sorted(
        Draft201909Validator(schema).iter_errors(load_compose()), key=lambda e: e.json_path
    )
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_every_group_is_a_scalable_service_and_the_stack_is_complete() -> None:
    services = load_compose()["services"]
    workers = {
        s["command"][2]: name
        for name, s in services.items()
        if s.get("command", [])[:2] == ["ayush", "worker"]
    }
    # Exactly the runnable groups: a service for a group that does not exist
    # would restart forever. Replay-only groups are run by `ayush replay`.
    assert set(workers) == set(GROUPS)
    assert not set(REPLAY_GROUPS) & set(workers)
    for name in workers.values():
        service = services[name]
        # --scale needs services without fixed host ports or container names.
        assert "ports" not in service and "container_name" not in service, name
        assert service["environment"]["AYUSH_METRICS_PORT"] == "9464", name
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert {"redis", "minio", "ingress", "migrate"} <= set(services)
    for name in ("otel-collector", "jaeger"):
        assert services[name]["profiles"] == ["tracing"]
    for name, service in services.items():
        needs = service.get("depends_on", {})
        assert set(needs) <= set(services), name


def test_collector_config_and_dockerfile() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    assert config["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
    dockerfile = Path(ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in dockerfile
