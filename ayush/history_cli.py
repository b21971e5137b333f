"""`ayush audit`, `ayush replay`, `ayush verify` and `ayush dlq`: reading history back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from ayush.command import run, settings_or_exit

audit_app = typer.Typer(no_args_is_help=True, help="Audit trails (admin keys only).")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead-letter topics: inspect, re-drive, purge.")
console = Console(stderr=True)

TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"]


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@audit_app.command("job")
def audit_job(
    job_id: Annotated[uuid.UUID, typer.Argument(help="The job's id.")],
    key: Annotated[str, typer.Option(envvar="AYUSH_API_KEY", help="An admin API key.")],
) -> None:
    """Print the ordered trail of every event of one job, as JSON."""
    from infra.db.engine import Database
    from infra.db.tenants import find_key_owner
    from infra.kafka.sealing import Sealer
    from producers.ingress.audit import job_trail
    from producers.ingress.caller import Caller
    from producers.ingress.errors import ApiError

    settings = settings_or_exit()

    async def trail() -> str:
        assert settings.database_url is not None
        db = Database(settings.database_url, pool_size=1)
        sealer = Sealer.from_settings(settings)
        try:
            owner = await find_key_owner(db, key)
            if owner is None:
                raise ApiError(401, "unauthorized", "unknown or revoked API key")
            found = await job_trail(db, Caller.of_key(owner), job_id, sealer)
            return found.model_dump_json(indent=2)
        finally:
            await db.close()
            if sealer is not None:
                await sealer.close()

    try:
        typer.echo(run(trail()))
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc


class _Bar:
    def __init__(self, progress: RichProgress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def topic(self, topic: str, source: str, total: int) -> None:
        self._task = self._progress.add_task(f"{topic} ({source})", total=total or None)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)


def _bar() -> RichProgress:
    return RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def replay_command(
    topic: Annotated[list[str], typer.Option(help="Topic to read; repeat for several.")] = [],  # noqa: B006
    start: Annotated[
        datetime,
        typer.Option("--from", formats=TIME_FORMATS, help="UTC unless an offset is given."),
    ] = datetime(1970, 1, 1),
    end: Annotated[
        datetime | None, typer.Option("--to", formats=TIME_FORMATS, help="Exclusive; default now.")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's events (its name or id).")
    ] = None,
    type_: Annotated[
        list[str], typer.Option("--type", help="Only events of this type; repeatable.")
    ] = [],  # noqa: B006
    out: Annotated[
        Path | None, typer.Option(help="Export the events to this JSON-lines file.")
    ] = None,
    into_group: Annotated[
        str | None, typer.Option(help="Re-run them through this group, side mode.")
    ] = None,
    source: Annotated[
        str, typer.Option(help="auto (Kafka while it has the range), kafka or archive.")
    ] = "auto",
    database_url: Annotated[
        str | None,
        typer.Option(help="With --into-group: the database to rebuild (default: DATABASE_URL)."),
    ] = None,
) -> None:
    """Export a time range of events (--out) or re-run it through a group (--into-group)."""
    from ayush import replay

    if (out is None) == (into_group is None):
        typer.echo("error: give exactly one of --out and --into-group", err=True)
        raise typer.Exit(2)
    if source not in ("auto", "kafka", "archive"):
        typer.echo("error: --source must be auto, kafka or archive", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit()
    live_url = settings.database_url
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    topics = topic
    if not topics and into_group is not None:
        try:
            topics = replay.replay_spec(into_group).topics
        except KeyError as exc:
            typer.echo(f"error: {exc.args[0]}", err=True)
            raise typer.Exit(2) from exc
    if not topics:
        typer.echo("error: give at least one --topic", err=True)
        raise typer.Exit(2)
    # an id needs no tenant row here: the history of a removed tenant still reads back
    tenant_id = _tenant_ids(live_url, [tenant], False)[0] if tenant is not None else None
    query = replay.Query(
        topics=topics,
        start=_utc(start),
        end=_utc(end or datetime.now(UTC)),
        tenant_id=tenant_id,
        types=frozenset(type_),
        source=source,  # type: ignore[arg-type]
    )
    with _bar() as bar:
        if out is not None:
            report = run(replay.export(settings, query, out, _Bar(bar)))
        else:
            assert into_group is not None
            try:
                report = run(replay.into_group(settings, query, into_group, _Bar(bar), live_url))
            except KeyError as exc:
                typer.echo(f"error: {exc.args[0]}", err=True)
                raise typer.Exit(2) from exc
    typer.echo(
        json.dumps(
            {
                "read": report.read,
                "matched": report.matched,
                "handled": report.handled,
                "forgotten": report.forgotten,
                "sources": report.sources,
                "failures": report.failures[:20],
            }
        )
    )
    if report.failures:
        raise typer.Exit(1)


def _tenant_ids(
    database_url: str | None, given: list[str], rows_required: bool = True
) -> list[uuid.UUID]:
    """Tenant ids from the names or ids given, looked up in the live database."""
    from ayush import replay

    assert database_url is not None
    try:
        return run(replay.resolve_tenants(database_url, given, rows_required=rows_required))
    except replay.UnknownTenant as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from exc


def verify_command(
    tenant: Annotated[
        list[str], typer.Option(help="Tenant to compare (its name or id); repeatable.")
    ],
    against: Annotated[str, typer.Option(help="URL of the rebuilt database.")],
    projection: Annotated[
        list[str],
        typer.Option(help="jobs, usage, memory or conversations; repeatable. Default: all."),
    ] = [],  # noqa: B006
) -> None:
    """Compare the live projections (DATABASE_URL) with rebuilt ones; exit 1 on differences."""
    from ayush import replay

    unknown = set(projection) - set(replay.PROJECTIONS)
    if unknown:
        typer.echo(
            f"error: unknown projection {sorted(unknown)[0]!r}: choose from "
            f"{', '.join(replay.PROJECTIONS)}",
            err=True,
        )
        raise typer.Exit(2)
    settings = settings_or_exit()
    tenant_ids = _tenant_ids(settings.database_url, tenant)
    assert settings.database_url is not None
    differences = run(
        replay.verify(
            settings.database_url, against, tenant_ids, tuple(projection or replay.PROJECTIONS)
        )
    )
    for line in differences:
        typer.echo(line)
    typer.echo(f"{len(differences)} differences")
    if differences:
        raise typer.Exit(1)


TopicOpt = Annotated[str, typer.Option("--topic", help="The topic whose dead letters to use.")]


@dlq_app.command("list")
def dlq_list(topic: TopicOpt, all_: Annotated[bool, typer.Option("--all")] = False) -> None:
    """Dead letters still pending (--all: also those retried or purged)."""
    from infra.kafka.dead_letters import DeadLetters

    letters = run(DeadLetters(settings_or_exit(), topic).letters(include_done=all_))
    table = Table("offset", "pending", "type", "event id", "group", "attempts", "error")
    for d in letters:
        event: dict[str, Any] = _event_json(d.record.value)
        table.add_row(
            str(d.offset),
            "yes" if d.pending else "no",
            escape(str(event.get("type", "?"))),
            escape(str(event.get("id", "?"))),
            d.group,
            str(d.attempts),
            escape(d.error[:80]),
        )
    out = Console()
    if not out.is_terminal:  # piped: do not squeeze columns into 80 characters
        out = Console(width=240)
    out.print(table)


@dlq_app.command("show")
def dlq_show(topic: TopicOpt, offset: Annotated[int, typer.Argument()]) -> None:
    """One dead letter in full: its error, where it came from, the event."""
    from infra.kafka.dead_letters import DeadLetters

    letters = run(DeadLetters(settings_or_exit(), topic).letters(include_done=True))
    found = [d for d in letters if d.offset == offset]
    if not found:
        typer.echo(f"error: no dead letter at offset {offset}", err=True)
        raise typer.Exit(1)
    d = found[0]
    typer.echo(
        json.dumps(
            {
                "offset": d.offset,
                "pending": d.pending,
                "error": d.error,
                "source": d.source,
                "group": d.group,
                "attempts": d.attempts,
                "event": _event_json(d.record.value),
            },
            indent=2,
        )
    )


@dlq_app.command("retry")
def dlq_retry(
    topic: TopicOpt,
    offset: Annotated[int | None, typer.Option(help="Only this dead letter.")] = None,
) -> None:
    """Publish pending dead letters to their topic again (after fixing the cause)."""
    from infra.kafka.dead_letters import DeadLetters
    from infra.kafka.publisher import Publisher

    settings = settings_or_exit()

    async def retry() -> int:
        publisher = Publisher(settings)
        await publisher.start()
        try:
            return len(await DeadLetters(settings, topic).retry(publisher, offset))
        finally:
            await publisher.stop()

    typer.echo(f"re-drove {run(retry())} dead letters")


@dlq_app.command("purge")
def dlq_purge(topic: TopicOpt) -> None:
    """Discard every pending dead letter."""
    from infra.kafka.dead_letters import DeadLetters

    typer.echo(f"purged {run(DeadLetters(settings_or_exit(), topic).purge())} dead letters")


def _event_json(value: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    except ValueError:
        return {"value": value.decode(errors="replace")}
