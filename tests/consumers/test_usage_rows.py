"""The usage group's pure parts: reading a usage event, budget thresholds, periods."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from consumers.groups.usage.group import reached, usage_row
from infra.db.usage import NO_KEY_TEXT, Spend, spend_keys
from infra.kafka.codec import encode
from schemas.ids import user_subject
from schemas.usage import period_reset
from tests.usage_tools import usage_event


def test_a_usage_event_becomes_the_row_the_bill_needs() -> None:
    tenant, key = uuid.uuid4(), uuid.uuid4()
    event = usage_event(tenant, key_id=key, user_id="ann", input_tokens=7, cost="0.00012345")
    row = usage_row(encode(event)[1])
    assert row["id"] == str(event.id) and row["tenant_id"] == str(tenant)
    assert row["api_key_id"] == str(key) and row["user_id"] == "ann"
    assert row["input_tokens"] == 7 and row["cost_usd"] == "0.00012345"
    assert row["day"] == event.occurred_at.astimezone(UTC).date().isoformat()
    assert row["job_id"] == str(event.payload.job_id)
    assert spend_keys([row]) == [
        ("key", key, row["day"][:7]),
        ("tenant", tenant, row["day"][:7]),
        ("user", user_subject(tenant, "ann"), row["day"][:7]),
    ]


def test_a_usage_without_key_or_user_is_kept_under_placeholders() -> None:
    row = usage_row(encode(usage_event(uuid.uuid4()))[1])
    assert row["api_key_id"] == NO_KEY_TEXT and row["user_id"] == ""
    assert [scope for scope, _, _ in spend_keys([row])] == ["tenant"]


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"type": "ai.job.failed"},
        {"payload.input_tokens": "12"},
        {"payload.output_tokens": -1},
        {"payload.model": None},
    ],
)
def test_what_is_not_a_usage_v1_event_is_refused(change: dict[str, object]) -> None:
    data = usage_event(uuid.uuid4()).model_dump(mode="json")
    for path, value in change.items():
        target = data["payload"] if path.startswith("payload.") else data
        target[path.removeprefix("payload.")] = value
    with pytest.raises((ValueError, KeyError)):
        usage_row(orjson.dumps(data))


def test_other_offsets_become_a_utc_day() -> None:
    data = usage_event(uuid.uuid4()).model_dump(mode="json")
    data["occurred_at"] = "2026-11-30T23:30:00-02:00"
    assert usage_row(orjson.dumps(data))["day"] == "2026-12-01"


def spend(spent: str, limit: str | None) -> Spend:
    tenant = uuid.uuid4()
    return Spend("tenant", tenant, "2026-11", tenant, Decimal(spent),
                 0, Decimal(limit) if limit is not None else None)  # fmt: skip


def test_thresholds_reached() -> None:
    assert reached(spend("79.99", "100")) == 0
    assert reached(spend("80", "100")) == 80
    assert reached(spend("99.99", "100")) == 80
    assert reached(spend("100", "100")) == 100
    assert reached(spend("500", None)) == 0
    assert reached(spend("0", "0")) == 0
    assert reached(spend("0.01", "0")) == 100


def test_a_month_resets_at_the_first_of_the_next() -> None:
    assert period_reset("2026-11") == datetime(2026, 12, 1, tzinfo=UTC)
    assert period_reset("2026-12") == datetime(2027, 1, 1, tzinfo=UTC)
