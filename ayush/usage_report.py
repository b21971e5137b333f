"""`ayush usage report`: a tenant's month by model, as a table."""

from __future__ import annotations

from datetime import date, timedelta

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infra.db.engine import Database
from infra.db.usage_report import UsageTotal, tenant_id_by_name, total_of, usage_totals
from schemas.money import usd_text


def month_range(month: str) -> tuple[date, date]:
    """First and last day of a YYYY-MM month; ValueError when it is not one."""
    first = date.fromisoformat(f"{month}-01")
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, following - timedelta(days=1)


async def month_by_model(database_url: str, tenant: str, month: str) -> list[UsageTotal] | None:
    """The tenant's totals per model for the month; None when there is no such tenant."""
    first, last = month_range(month)
    db = Database(database_url, pool_size=1)
    try:
        tenant_id = await tenant_id_by_name(db, tenant)
        if tenant_id is None:
            return None
        return await usage_totals(db, tenant_id, first, last, "model")
    finally:
        await db.close()


def render(tenant: str, month: str, rows: list[UsageTotal], console: Console) -> None:
    # Names come from requests: shown as they are, never read as rich markup (links, styles).
    table = Table(title=escape(f"Usage of {tenant} in {month}"), show_footer=True)
    total = total_of(rows)
    table.add_column("model", footer="total")
    for name, value in (
        ("events", total.events),
        ("input tokens", total.input_tokens),
        ("output tokens", total.output_tokens),
    ):
        table.add_column(name, justify="right", footer=f"{value:,}")
    table.add_column("cost (USD)", justify="right", footer=usd_text(total.cost_usd))
    for r in rows:
        table.add_row(
            escape(r.group), f"{r.events:,}", f"{r.input_tokens:,}", f"{r.output_tokens:,}",
            usd_text(r.cost_usd),
        )  # fmt: skip
    console.print(table)
