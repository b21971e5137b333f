"""`ayush status`: topics and consumer groups as tables that fit 80 columns, or as JSON.

The groups are one small table each (a title line with the group's state,
members and lag over its partitions), so no table has more than five columns
and none squeezes its headers into broken words in a narrow terminal.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from ayush.groups import GROUPS
from infra.kafka.status import ClusterStatus, GroupStatus, cluster_status
from infra.settings import Settings


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    for i, column in enumerate(columns):
        if i == 0:  # the name column folds long names; the numbers never wrap
            table.add_column(column, justify="left", overflow="fold", ratio=1)
        else:
            table.add_column(column, justify="right", no_wrap=True)
    return table


def _members(g: GroupStatus) -> str:
    if g.members is None:
        return "[yellow]?[/]"
    return f"[green]{g.members}[/]" if g.members else "[red]0[/]"


def _group_table(g: GroupStatus) -> Table:
    lag = f"[yellow]{g.lag}[/]" if g.lag else "0"
    title = f"[bold]{g.group}[/]  {g.state}, members {_members(g)}, lag {lag}"
    table = _table(title, "topic", "part", "end", "committed", "lag")
    if not g.partitions:
        table.add_row("-", "-", "-", "-", "-")
    for p in g.partitions:
        table.add_row(
            p.topic,
            str(p.partition),
            str(p.end),
            "-" if p.committed is None else str(p.committed),
            f"[yellow]{p.lag}[/]" if p.lag else "0",
        )
    return table


def render(status: ClusterStatus) -> Group:
    topics = _table("Topics", "topic", "partitions", "messages")
    for t in status.topics:
        topics.add_row(t.topic, str(t.partitions), str(t.messages))
    groups = [_group_table(g) for g in status.groups]
    # The same note for every group whose description could not be read: say it once.
    notes = dict.fromkeys(g.note for g in status.groups if g.note)
    return Group(
        topics, "", "[bold]Consumer groups[/]", *groups, *(f"[yellow]note:[/] {n}" for n in notes)
    )


def as_json(status: ClusterStatus) -> dict[str, Any]:
    """The same as the tables, for scripts: plain numbers, `null` where unknown."""
    return {
        "topics": [
            {
                "topic": t.topic,
                "partitions": t.partitions,
                "messages": t.messages,
                "end_offsets": {str(p): end for p, end in sorted(t.end_offsets.items())},
            }
            for t in status.topics
        ],
        "groups": [
            {
                "group": g.group,
                "state": g.state,
                "members": g.members,
                "lag": g.lag,
                "note": g.note,
                "partitions": [
                    {
                        "topic": p.topic,
                        "partition": p.partition,
                        "end": p.end,
                        "committed": p.committed,
                        "lag": p.lag,
                    }
                    for p in g.partitions
                ],
            }
            for g in status.groups
        ],
    }


async def show_status(settings: Settings, watch: float | None, as_text: bool = True) -> None:
    """Print once, or every `watch` seconds until interrupted; JSON (one document a line)
    when not `as_text`."""
    groups = {name: spec.topics for name, spec in GROUPS.items()}
    if not as_text:
        while True:
            print(json.dumps(as_json(await cluster_status(settings, groups))), flush=True)
            if watch is None:
                return
            await asyncio.sleep(watch)
    if watch is None:
        Console().print(render(await cluster_status(settings, groups)))
        return
    with Live(render(await cluster_status(settings, groups)), auto_refresh=False) as live:
        while True:
            await asyncio.sleep(watch)
            live.update(render(await cluster_status(settings, groups)), refresh=True)
