"""What Postgres holds of one user's text, and erasing it when the user is forgotten.

Forgetting a user (DELETE /v1/users/{id}) destroys their data key, which makes every
event copy unreadable; these are the projections that hold the same text in clear:

- jobs of the user made before the forget: `request` becomes the redacted marker, their
  result's `text` and `tool_calls` are emptied (status, model, tokens and cost stay:
  they are the bill, not the user's words);
- the user's conversations and responses, and every item in them, are deleted;
- the user's memories made before the forget become tombstones (no text, no metadata),
  as the memory group leaves them (it also deletes their vectors);
- the semantic cache's answers to the user's jobs are deleted;
- the user's schedules (their prompts and params), the runs waiting on their jobs, and
  the user's tasks with their reminders are deleted.

Usage rows name the user but hold no text: they stay.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from infra.db.engine import Database

REDACTED_JSON = json.dumps({"redacted": True, "reason": "user forgotten"})

_ERASE: tuple[tuple[str, str], ...] = (
    (
        "job_results",
        "UPDATE job_results SET text = '', tool_calls = NULL WHERE job_id IN "
        "(SELECT id FROM jobs WHERE tenant_id = :t AND user_id = :u AND id < :b)",
    ),
    (
        "jobs",
        "UPDATE jobs SET request = CAST(:redacted AS jsonb) "
        "WHERE tenant_id = :t AND user_id = :u AND id < :b",
    ),
    (
        "conversation_items",
        "DELETE FROM conversation_items WHERE tenant_id = :t AND ("
        "conversation_id IN (SELECT id FROM conversations WHERE tenant_id = :t AND user_id = :u)"
        " OR response_id IN (SELECT id FROM responses WHERE tenant_id = :t AND user_id = :u))",
    ),
    ("responses", "DELETE FROM responses WHERE tenant_id = :t AND user_id = :u"),
    ("conversations", "DELETE FROM conversations WHERE tenant_id = :t AND user_id = :u"),
    (
        "memories",
        "UPDATE memories SET status = 'deleted', text = '', metadata = '{}', chunks = 0, "
        "error = NULL WHERE tenant_id = :t AND user_id = :u AND id < :b",
    ),
    # Answers the semantic cache kept from the user's jobs.
    ("semantic_cache", "DELETE FROM semantic_cache WHERE tenant_id = :t AND user_id = :u"),
    (
        "schedule_runs",
        "DELETE FROM schedule_runs WHERE tenant_id = :t AND schedule_id IN "
        "(SELECT id FROM schedules WHERE tenant_id = :t AND user_id = :u)",
    ),
    # A task's reminders (schedules of the user too) go with it.
    ("schedules", "DELETE FROM schedules WHERE tenant_id = :t AND user_id = :u"),
    ("tasks", "DELETE FROM tasks WHERE tenant_id = :t AND user_id = :u"),
)


async def erase_user(
    db: Database, tenant_id: uuid.UUID, user_id: str, before: uuid.UUID
) -> dict[str, int]:
    """Erase the user's text from the projections, in one transaction; rows touched per
    table. Idempotent: a second run finds the same rows erased."""
    params = {"t": tenant_id, "u": user_id, "b": before, "redacted": REDACTED_JSON}
    touched: dict[str, int] = {}
    async with db.transaction() as session:
        for table, statement in _ERASE:
            used = {k: v for k, v in params.items() if f":{k}" in statement}
            result = await session.execute(text(statement), used)
            touched[table] = result.rowcount or 0
    return touched


@dataclass(frozen=True)
class Forgotten:
    """The users of some tenants who were forgotten, each with the cut-off id of the forget
    (everything of theirs made before it is gone)."""

    before: Mapping[tuple[str, str], uuid.UUID]

    def hides(self, table: str, row: Mapping[str, Any]) -> bool:
        """Whether the row is a forgotten user's, made before their forget."""
        cut = self.before.get((str(row.get("tenant_id")), str(row.get("user_id"))))
        if cut is None:
            return False
        if table in ("conversations", "responses"):
            return True
        made = row.get("memory_id") if table == "memory_chunks" else row.get("id")
        return made is not None and uuid.UUID(str(made)) < cut


async def forgotten_users(db: Database, tenant_ids: Sequence[uuid.UUID]) -> Forgotten:
    """The forgotten users of these tenants: those whose memories were forgotten, which
    forgetting a user always does (and which destroyed their data key)."""
    async with db.session() as session:
        found = await session.execute(
            text(
                "SELECT tenant_id, user_id, before FROM memory_user_forgets "
                "WHERE tenant_id = ANY(:tenants)"
            ),
            {"tenants": list(tenant_ids)},
        )
        return Forgotten({(str(t), u): b for t, u, b in found.all()})
