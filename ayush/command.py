"""What every `ayush` command starts with: its settings, and a way to run a coroutine.

A command's settings come from the environment; with no service named there, a running
`ayush dev`'s, or a stopped one's: then the services the command `needs` are started from
its data folder until the command ends (ayush.dev_services).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Coroutine
from typing import Any, TypeVar

import typer

from ayush.dev_services import POSTGRES, for_this_command
from infra.local_stack.stack import SERVICES
from infra.settings import Settings

T = TypeVar("T")


def command_settings(needs: Collection[str] = SERVICES) -> Settings:
    return for_this_command(Settings(), needs)


def services_or_exit(settings: Settings, needs: Collection[str] = SERVICES) -> Settings:
    """The settings, once the services the command `needs` are configured; else exit 2."""
    try:
        if set(needs) <= set(POSTGRES):
            settings.require_database()
        else:
            settings.require_services()
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    return settings


def settings_or_exit(needs: Collection[str] = SERVICES) -> Settings:
    return services_or_exit(command_settings(needs), needs)


def database_or_exit() -> Settings:
    """For a command that needs only Postgres: a stopped dev stack starts nothing else."""
    return settings_or_exit(POSTGRES)


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(coro)
