"""`ayush status`: topics and consumer groups as rich tables, optionally refreshed."""

from __future__ import annotations

import asyncio

from rich.console import Group
from rich.live import Live
from rich.table import Table

from ayush.groups import GROUPS
from infra.kafka.status import ClusterStatus, cluster_status
from infra.settings import Settings

TEXT = ("topic", "group", "state")


def render(status: ClusterStatus) -> Group:
    topics = Table(title="Topics", title_justify="left")
    for column in ("topic", "partitions", "end offsets (sum)"):
        topics.add_column(column, justify="left" if column in TEXT else "right", overflow="fold")
    for t in status.topics:
        topics.add_row(t.topic, str(t.partitions), str(t.messages))

    groups = Table(title="Consumer groups", title_justify="left")
    for column in ("group", "state", "live members", "topic", "partition", "end", "committed"):
        groups.add_column(column, justify="left" if column in TEXT else "right", overflow="fold")
    groups.add_column("lag", justify="right")
    for g in status.groups:
        if g.members is None:
            live = "[yellow]?[/]"
        else:
            live = f"[green]{g.members}[/]" if g.members else "[red]0[/]"
        if not g.partitions:
            groups.add_row(g.group, g.state, live, "-", "-", "-", "-", "-")
        for i, p in enumerate(g.partitions):
            lag = f"[yellow]{p.lag}[/]" if p.lag else "0"
            groups.add_row(
                g.group if i == 0 else "", g.state if i == 0 else "", live if i == 0 else "",
                p.topic, str(p.partition), str(p.end),
                "-" if p.committed is None else str(p.committed), lag,
            )  # fmt: skip
        groups.add_section()
    # The same note for every group whose description could not be read: say it once.
    notes = dict.fromkeys(g.note for g in status.groups if g.note)
    return Group(topics, groups, *(f"[yellow]note:[/] {n}" for n in notes))


async def show_status(settings: Settings, watch: float | None) -> None:
    groups = {name: spec.topics for name, spec in GROUPS.items()}
    if watch is None:
        from rich.console import Console

        Console().print(render(await cluster_status(settings, groups)))
        return
    with Live(render(await cluster_status(settings, groups)), auto_refresh=False) as live:
        while True:
            await asyncio.sleep(watch)
            live.update(render(await cluster_status(settings, groups)), refresh=True)
