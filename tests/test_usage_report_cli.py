"""`ayush usage report`: a tenant's month by model, with totals."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from rich.console import Console

from ayush.usage_report import render
from consumers.groups.usage.group import usage_row
from infra.db import usage as usage_store
from infra.db.engine import Database
from infra.db.tenants import ensure_tenant
from infra.db.usage_report import UsageTotal
from infra.kafka.codec import encode
from infra.local_stack import ServiceAddresses
from tests.harness import unique
from tests.test_cli import ayush
from tests.usage_tools import usage_event


async def test_report_shows_each_model_and_the_totals(
    services: ServiceAddresses, db: Database
) -> None:
    name = unique("report-")
    tenant, _ = await ensure_tenant(db, name)
    events = [
        usage_event(tenant.id, model="gpt-fake", input_tokens=1000, output_tokens=10, cost="0.25"),
        usage_event(tenant.id, model="gpt-fake", input_tokens=2000, output_tokens=20, cost="0.5"),
        usage_event(tenant.id, model="claude-fake", input_tokens=5, output_tokens=5, cost="1"),
    ]
    await usage_store.record_batch(db, [usage_row(encode(e)[1]) for e in events])
    month = datetime.now(UTC).strftime("%Y-%m")

    result = await asyncio.to_thread(
        ayush, services, "usage", "report", "--tenant", name, "--month", month
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    gpt = next(line for line in lines if "gpt-fake" in line)
    assert "3,000" in gpt and "0.75000000" in gpt
    assert any("claude-fake" in line and "1.00000000" in line for line in lines)
    total = next(line for line in lines if "total" in line)
    assert "3,005" in total and "1.75000000" in total

    unknown = await asyncio.to_thread(
        ayush, services, "usage", "report", "--tenant", f"no-{uuid.uuid4()}", "--month", month
    )
    assert unknown.returncode == 1 and "no tenant" in unknown.stderr
    bad = await asyncio.to_thread(
        ayush, services, "usage", "report", "--tenant", name, "--month", "November"
    )
    assert bad.returncode == 2 and "2026-11" in bad.stderr


def test_report_shows_names_as_text_never_as_markup() -> None:
    planted = "[link=http://x.invalid]gpt[/link][bold]"
    console = Console(record=True, width=200)
    render("acme[red]", "2026-11", [UsageTotal(planted, 1, 2, 3, Decimal("0.1"))], console)
    shown = console.export_text()
    assert planted in shown and "acme[red]" in shown
