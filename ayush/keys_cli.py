"""`ayush keys create|list|revoke|rotate`: a tenant's API keys, as over HTTP at /v1/keys."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from ayush.command import database_or_exit, run
from infra.settings import Settings

keys_app = typer.Typer(no_args_is_help=True, help="Tenants' API keys.")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'30d', '1h', '90m', '45s' or a plain number of seconds; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if match is None:
        raise ValueError(f"a duration looks like 30d, 1h, 90m or 45s, not {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    # Keys live in Postgres: a stopped dev stack starts only that for the command (a running
    # one is told of revocations through its Redis).
    return database_or_exit()


def _key_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise _fail(f"not a key id: {text!r}") from None


def _expiry(expires_in: str | None, expires_at: str | None) -> datetime | None:
    if expires_in and expires_at:
        raise _fail("give --expires-in or --expires-at, not both")
    if expires_in:
        try:
            return datetime.now(UTC) + timedelta(seconds=parse_duration(expires_in))
        except ValueError as exc:
            raise _fail(f"--expires-in: {exc}") from exc
    if expires_at:
        try:
            at = datetime.fromisoformat(expires_at)
        except ValueError as exc:
            raise _fail(f"--expires-at: not an ISO date and time: {expires_at!r}") from exc
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    return None


def _view(key: Any) -> dict[str, Any]:
    from producers.ingress.keys import key_view

    return key_view(key).model_dump(mode="json")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if new.")],
    role: Annotated[
        str | None, typer.Option(help="admin, developer (default), service or auditor.")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Shortcut for --role admin.")] = False,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="A permission (repeat for more).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    expires_in: Annotated[str | None, typer.Option(help="E.g. 30d, 12h.")] = None,
    expires_at: Annotated[str | None, typer.Option(help="ISO date and time.")] = None,
    allow_ip: Annotated[
        list[str] | None,
        typer.Option("--allow-ip", help="Only from this CIDR or address (repeat for more)."),
    ] = None,
) -> None:
    """Create an API key; it is printed once, as the last line."""
    from ayush.keys import create_key
    from producers.ingress.access import scope_problem
    from schemas.keys import NewKey

    if admin and role not in (None, "admin"):
        raise _fail("--admin means --role admin")
    chosen = "admin" if admin else role or "developer"
    try:
        spec = NewKey(
            name=name,
            role=chosen,
            scopes=scope or [],
            expires_at=_expiry(expires_in, expires_at),
            allowed_ips=allow_ip or [],
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'key'}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(problems) from exc
    problem = scope_problem(spec.role, frozenset(spec.scopes))
    if problem is not None:
        raise _fail(f"--scope: {problem}")
    tenant_created, key, plaintext = run(create_key(_settings(), tenant, spec))
    if tenant_created:
        typer.echo(f"created tenant {tenant}")
    typer.echo(f"key {key.id} ({spec.role}); it is shown only once:")
    typer.echo(plaintext)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str, typer.Option(help="Tenant name or id.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Every key of a tenant, newest first (never a secret)."""
    from rich.console import Console
    from rich.table import Table

    from ayush.keys import KeyCommandError, list_keys

    try:
        keys = [_view(k) for k in run(list_keys(_settings(), tenant))]
    except KeyCommandError as exc:
        raise _fail(str(exc), 1) from exc
    if as_json:
        typer.echo(json.dumps(keys, indent=2))
        return
    table = Table(
        "id",
        "name",
        "prefix",
        "role",
        "scopes",
        "created",
        "last used",
        "expires",
        "allowed ips",
        "revoked",
    )
    for k in keys:
        table.add_row(
            k["id"],
            k["name"],
            k["prefix"],
            k["role"],
            ",".join(k["scopes"]),
            *(_day(k[f]) for f in ("created_at", "last_used_at", "expires_at")),
            ",".join(k["allowed_ips"]),
            _day(k["revoked_at"]),
        )
    Console(width=200).print(table)


def _day(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key; running ingress processes refuse it within a second."""
    from ayush.keys import KeyCommandError, revoke_key

    ident = _key_id(key_id)
    try:
        untold = run(revoke_key(_settings(), ident))
    except KeyCommandError as exc:
        raise _fail(str(exc), 1) from exc
    if untold is not None:
        raise _fail(f"revoked, but running ingresses were not told ({untold}); run again", 1)
    typer.echo(f"revoked key {ident}")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    grace: Annotated[
        str, typer.Option(help="How long the old secret keeps working (1h, 10m, 0).")
    ] = "1h",
) -> None:
    """A new secret for a key, printed once as the last line."""
    from ayush.keys import KeyCommandError, rotate_key
    from schemas.keys import MAX_GRACE_S

    ident = _key_id(key_id)
    try:
        grace_s = parse_duration(grace)
    except ValueError as exc:
        raise _fail(f"--grace: {exc}") from exc
    if grace_s > MAX_GRACE_S:
        raise _fail(f"--grace: at most {MAX_GRACE_S // 86400}d")
    try:
        plaintext, untold = run(rotate_key(_settings(), ident, grace_s))
    except KeyCommandError as exc:
        raise _fail(str(exc), 1) from exc
    if untold is not None:  # the new secret exists all the same: it is printed below
        typer.echo(f"warning: running ingresses were not told ({untold})", err=True)
    until = "now" if grace_s == 0 else f"in {grace}"
    typer.echo(
        f"key {ident} rotated; the old secret stops working {until}. New secret, shown once:"
    )
    typer.echo(plaintext)
