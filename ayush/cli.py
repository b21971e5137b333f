"""The `ayush` command."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Annotated

import typer

from ayush.command import database_or_exit, run, settings_or_exit
from ayush.dev_services import stop_started, with_dev_services
from ayush.history_cli import audit_app, dlq_app, replay_command, verify_command
from ayush.keys_cli import keys_app
from ayush.schedules_cli import schedules_app
from infra.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Ayush event backbone.")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics.")
memory_app = typer.Typer(no_args_is_help=True, help="Users' memories.")
batch_app = typer.Typer(no_args_is_help=True, help="Batches of chat requests (OpenAI format).")
secrets_app = typer.Typer(no_args_is_help=True, help="Credentials and signing secrets at rest.")
app.add_typer(topics_app, name="topics")
usage_app = typer.Typer(no_args_is_help=True, help="Usage and cost of tenants.")
app.add_typer(keys_app, name="keys")
app.add_typer(schedules_app, name="schedules")
app.add_typer(audit_app, name="audit")
app.add_typer(dlq_app, name="dlq")
app.command("replay")(replay_command)
app.command("verify")(verify_command)
app.add_typer(memory_app, name="memory")
app.add_typer(batch_app, name="batch")
app.add_typer(usage_app, name="usage")
app.add_typer(secrets_app, name="secrets")


def _logging(level: str = "INFO") -> None:
    from infra.telemetry.logs import configure_logging

    configure_logging(with_dev_services(Settings()), os.environ.get("AYUSH_LOG_LEVEL", level))


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="Port of the ingress.")] = 8000,
    host: Annotated[str, typer.Option(help="Address the ingress listens on.")] = "127.0.0.1",
    data_dir: Annotated[Path, typer.Option(help="Where local services keep data.")] = Path(
        ".ayush"
    ),
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop everything when any process dies.")
    ] = False,
) -> None:
    """Run the whole platform locally: services, migrations, topics, ingress, workers.

    A process that dies is restarted with a backoff; the stack stops only when one
    keeps dying (5 times in a minute), or at the first death with --fail-fast.
    """
    from ayush.dev import run_dev

    _logging("WARNING")
    settings = Settings().model_copy(update={"data_dir": data_dir})
    raise typer.Exit(run_dev(settings, host, port, fail_fast=fail_fast))


@app.command()
def ingress(
    port: Annotated[int, typer.Option()] = 8000,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """Run the HTTP ingress."""
    from ayush.serve import serve_ingress

    _logging()
    serve_ingress(settings_or_exit(), host, port)


@app.command()
def worker(group: Annotated[str, typer.Argument(help="The consumer group to run.")]) -> None:
    """Run one consumer group; start more copies to scale it out."""
    from ayush.groups import GROUPS
    from ayush.worker import run_worker

    if group not in GROUPS:
        typer.echo(f"error: unknown group {group!r}; known: {', '.join(GROUPS)}", err=True)
        raise typer.Exit(2)
    _logging()
    settings = settings_or_exit()
    run(run_worker(settings, group))


@app.command()
def status(
    watch: Annotated[
        float | None,
        typer.Option("--watch", "-w", help="Refresh every this many seconds until Ctrl-C."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON for scripts (with --watch: one line a refresh).")
    ] = False,
) -> None:
    """Topics and consumer groups: partitions, end and committed offsets, lag, live members."""
    from ayush.status import show_status

    settings = settings_or_exit()
    with contextlib.suppress(KeyboardInterrupt):
        run(show_status(settings, watch, as_text=not as_json))


@app.command()
def docs() -> None:
    """Regenerate docs/asyncapi.json (events), docs/openapi.json (HTTP) and the README's
    table of who may call which route, from the code."""
    from ayush.docs import write_documents

    for path in write_documents():
        typer.echo(f"wrote {path}")


@app.command()
def migrate() -> None:
    """Apply the database migrations."""
    from infra.db.migrate import upgrade

    settings = database_or_exit()
    assert settings.database_url is not None
    upgrade(settings.database_url)
    typer.echo("database is up to date")


@topics_app.command("create")
def topics_create() -> None:
    """Create every declared topic (and dead-letter topic) that does not exist yet."""
    from infra.kafka.admin import create_topics

    settings = settings_or_exit()
    created = run(create_topics(settings))
    typer.echo(f"created {len(created)} topics" + (": " + ", ".join(created) if created else ""))


@memory_app.command("reembed")
def memory_reembed(
    tenant: Annotated[
        uuid.UUID | None, typer.Option(help="Only this tenant's memories (its id).")
    ] = None,
) -> None:
    """Re-embed every memory stored by another model than the configured one."""
    from ayush.memory import reembed_all

    settings = settings_or_exit()
    count, model = run(reembed_all(settings, tenant))
    typer.echo(f"published {count} re-embed events for model {model}")


@batch_app.command("submit")
def batch_submit(
    file: Annotated[
        Path, typer.Argument(help="JSONL, one request per line (OpenAI batch format).")
    ],
    model: Annotated[str | None, typer.Option(help="Model for every line.")] = None,
    url: Annotated[str, typer.Option(envvar="AYUSH_URL", help="The ingress.")] = (
        "http://127.0.0.1:8000"
    ),
    api_key: Annotated[str | None, typer.Option(envvar="AYUSH_API_KEY")] = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="Where results go; default: beside FILE.")
    ] = None,
) -> None:
    """Submit a batch, show its progress, then download the output and error files."""
    from rich.console import Console

    from producers.batch_submit import SubmitError, submit

    console = Console(stderr=True)
    key = api_key or _dev_key(Settings())
    if not key:
        typer.echo("error: no API key: pass --api-key or set AYUSH_API_KEY", err=True)
        raise typer.Exit(2)
    if not file.is_file():
        typer.echo(f"error: no such file: {file}", err=True)
        raise typer.Exit(2)
    try:
        outcome = submit(url, key, file, model, out_dir or file.parent, console)
    except SubmitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for label, path in (("output", outcome.output), ("errors", outcome.errors)):
        if path is not None:
            typer.echo(f"{label}: {path}")
    if outcome.status != "completed":
        typer.echo(f"error: the batch ended {outcome.status}", err=True)
        raise typer.Exit(1)


def _dev_key(settings: Settings) -> str | None:
    saved = settings.data_dir / "dev-api-key"
    return saved.read_text().strip() if saved.exists() else None


@usage_app.command("report")
def usage_report(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    month: Annotated[str, typer.Option(help="Month as YYYY-MM.")],
) -> None:
    """Print a tenant's usage of one month by model, with totals."""
    from rich.console import Console

    from ayush.usage_report import month_by_model, month_range, render

    try:
        month_range(month)
    except ValueError as exc:
        typer.echo(f"error: --month must look like 2026-11, not {month!r}", err=True)
        raise typer.Exit(2) from exc
    settings = database_or_exit()
    assert settings.database_url is not None
    rows = run(month_by_model(settings.database_url, tenant, month))
    if rows is None:
        typer.echo(f"error: no tenant named {tenant!r}", err=True)
        raise typer.Exit(1)
    render(tenant, month, rows, Console())


@usage_app.command("prune")
def usage_prune(
    older_than: Annotated[str, typer.Option(help="Age of the claims to forget, e.g. 400d.")],
    dry_run: Annotated[bool, typer.Option(help="Only count them.")] = False,
) -> None:
    """Forget usage event ids claimed longer ago than Kafka can deliver their events."""
    from ayush.usage_prune import PruneRefused, parse_days, prune
    from infra.errors import TransientError

    try:
        days = parse_days(older_than)
    except ValueError as exc:
        typer.echo(f"error: --older-than: {exc}", err=True)
        raise typer.Exit(2) from exc
    settings = settings_or_exit()
    try:
        outcome = run(prune(settings, days, dry_run=dry_run))
    except PruneRefused as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from exc
    except TransientError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    verb = "deleted" if outcome.deleted else "would delete"
    typer.echo(f"{verb} {outcome.claims} usage claims older than {days} days")


@secrets_app.command("reseal")
def secrets_reseal() -> None:
    """Re-seal stored secrets with the first key of AYUSH_ENCRYPTION_KEYS (after a rotation)."""
    from ayush.keys import reseal

    settings = database_or_exit()
    typer.echo(f"re-sealed {run(reseal(settings))} secrets")


def main() -> None:
    try:
        app()
    finally:
        stop_started()  # the services a stopped dev stack lent this command


if __name__ == "__main__":
    main()
