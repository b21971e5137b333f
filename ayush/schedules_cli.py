"""`ayush schedules list`: the schedules of a tenant (or of every tenant), with their next
fire times, as GET /v1/schedules shows them."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ayush.command import database_or_exit, run
from infra.settings import Settings

schedules_app = typer.Typer(no_args_is_help=True, help="Schedules: what runs at a time.")


async def list_schedules(settings: Settings, tenant: str | None) -> list[dict[str, Any]]:
    from infra.db import schedules as store
    from infra.db.engine import Database
    from infra.db.tenants import find_tenant_id
    from schemas.schedules import ScheduleView

    db = Database(settings.require_database(), pool_size=1)
    try:
        tenant_id = None
        if tenant is not None:
            tenant_id = await find_tenant_id(db, tenant)
            if tenant_id is None:
                raise LookupError(f"no tenant named {tenant!r}")
        found = await store.list_schedules(db, tenant_id, limit=10_000)
        return [
            {
                "tenant_id": str(s.tenant_id),
                **ScheduleView.model_validate(s, from_attributes=True).model_dump(mode="json"),
            }
            for s in found
        ]
    finally:
        await db.close()


def _when(schedule: dict[str, Any]) -> str:
    if schedule["cron"]:
        return f"{schedule['cron']} ({schedule['timezone']})"
    if schedule["interval_s"]:
        return f"every {schedule['interval_s']}s"
    return f"at {_time(schedule['at'])}"


def _time(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def _target(target: dict[str, Any]) -> str:
    parts = []
    if "job" in target:
        parts.append(f"job {target['job'].get('model', '?')}")
    if "action" in target:
        parts.append(f"action {target['action'].get('action', '?')}")
    return " -> ".join(parts) or "-"


@schedules_app.command("list")
def schedules_list(
    tenant: Annotated[
        str | None, typer.Option(help="Tenant name or id (default: every tenant).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Every schedule (of a tenant), oldest first, with its next fire time (UTC)."""
    from rich.console import Console
    from rich.table import Table

    try:
        found = run(list_schedules(database_or_exit(), tenant))
    except LookupError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table("id", "tenant", "name", "user", "when", "target", "missed", "paused", "next")
    for s in found:
        table.add_row(
            s["id"],
            s["tenant_id"],
            s["name"],
            s["user_id"] or "-",
            _when(s),
            _target(s["target"]),
            s["missed"],
            "yes" if s["paused"] else "no",
            _time(s["next_fire_at"]),
        )
    Console(width=220).print(table)
