"""Row-level security as a second wall: a read that forgets its tenant filter sees nothing else."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from infra.db import jobs as job_store
from infra.db.engine import READER_ROLE, Database
from infra.local_stack import ServiceAddresses
from tests.conftest import TenantKey, make_tenant


@pytest.fixture
async def walled(services: ServiceAddresses) -> AsyncIterator[Database]:
    """The ingress's kind of Database; one connection, so every read reuses the last one's."""
    database = Database(services.database_url, pool_size=1, tenant_wall=True)
    yield database
    await database.close()


async def _jobs(db: Database, tenant: TenantKey, count: int) -> list[uuid.UUID]:
    """`count` finished jobs of the tenant, each with a result, written as the owner."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with db.transaction() as session:
        for job_id in ids:
            params = {"id": job_id, "t": tenant.tenant_id, "r": json.dumps({}), "e": uuid.uuid4()}
            await session.execute(
                text(
                    "INSERT INTO jobs (id, tenant_id, kind, model, status, request, "
                    "request_event_id) VALUES (:id, :t, 'chat', 'm', 'succeeded', "
                    "CAST(:r AS jsonb), :e)"
                ),
                params,
            )
            await session.execute(
                text(
                    "INSERT INTO job_results (job_id, text, provider, model, event_id) "
                    "VALUES (:id, 'answer', 'p', 'm', :e)"
                ),
                params,
            )
    return ids


async def test_unfiltered_read_sees_only_the_tenant_set(db: Database, walled: Database) -> None:
    a, b = await make_tenant(db), await make_tenant(db)
    mine = await _jobs(db, a, 3)
    theirs = await _jobs(db, b, 2)

    async with walled.tenant_reads(a.tenant_id) as session:  # type: ignore[arg-type]
        # Deliberately no tenant filter: the policy is the only thing in the way.
        jobs = (await session.execute(text("SELECT id, tenant_id FROM jobs"))).all()
        results = (await session.execute(text("SELECT job_id FROM job_results"))).scalars()
        results_seen = set(results)
        keys = (await session.execute(text("SELECT tenant_id FROM api_keys"))).scalars()
        key_tenants = set(keys)
        user = (await session.execute(text("SELECT current_user"))).scalar_one()

    assert user == READER_ROLE
    assert {row.tenant_id for row in jobs} == {a.tenant_id}
    assert set(mine) <= {row.id for row in jobs}
    assert set(mine) <= results_seen and not set(theirs) & results_seen
    assert key_tenants == {a.tenant_id}
    # The owner (workers, writes) is not behind the wall.
    async with db.session() as session:
        owner_sees = set((await session.execute(text("SELECT id FROM jobs"))).scalars())
    assert set(mine) | set(theirs) <= owner_sees


async def test_reader_without_a_tenant_sees_no_row(db: Database, walled: Database) -> None:
    a = await make_tenant(db)
    await _jobs(db, a, 1)
    # The one pooled connection has had a tenant set by an earlier transaction:
    # its setting is then '' rather than unset, and must not fail the read.
    async with walled.tenant_reads(a.tenant_id) as session:  # type: ignore[arg-type]
        assert (await session.execute(text("SELECT count(*) FROM jobs"))).scalar_one() >= 1
    async with walled.session() as session:
        await session.execute(text(f"SET LOCAL ROLE {READER_ROLE}"))
        for table in ("jobs", "job_results", "api_keys", "memories", "usage_daily", "tenants"):
            rows = (await session.execute(text(f"SELECT * FROM {table}"))).all()
            assert rows == [], table


async def test_the_tenant_and_role_end_with_the_transaction(db: Database, walled: Database) -> None:
    a = await make_tenant(db)
    await _jobs(db, a, 1)
    async with walled.tenant_reads(a.tenant_id) as session:  # type: ignore[arg-type]
        await session.execute(text("SELECT 1"))
    # Same connection (pool of one), outside tenant_reads: the owner again.
    async with walled.session() as session:
        who = (await session.execute(text("SELECT current_user"))).scalar_one()
        tenant = (
            await session.execute(text("SELECT current_setting('ayush.tenant_id', true)"))
        ).scalar_one()
    assert who != READER_ROLE
    assert not tenant


async def test_reader_cannot_write(db: Database, walled: Database) -> None:
    a = await make_tenant(db)
    with pytest.raises(DBAPIError, match="permission denied"):
        async with walled.tenant_reads(a.tenant_id) as session:  # type: ignore[arg-type]
            await session.execute(text("DELETE FROM jobs"))


async def test_read_functions_still_find_the_tenants_rows(db: Database, walled: Database) -> None:
    a, b = await make_tenant(db), await make_tenant(db)
    (job_id,) = await _jobs(db, a, 1)
    found = await job_store.get_job(walled, a.tenant_id, job_id)  # type: ignore[arg-type]
    assert found is not None and found.result is not None and found.result.text == "answer"
    assert await job_store.get_job(walled, b.tenant_id, job_id) is None  # type: ignore[arg-type]


async def test_every_tenant_table_is_behind_the_wall(db: Database) -> None:
    """A table with a tenant_id column (from any migration, later ones too) needs the policy."""
    async with db.session() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT c.relname, c.relrowsecurity, "
                    "  EXISTS (SELECT 1 FROM pg_policies p WHERE p.schemaname = n.nspname "
                    "          AND p.tablename = c.relname AND :role = ANY(p.roles) "
                    "          AND p.cmd IN ('SELECT', 'ALL')), "
                    "  has_table_privilege(:role, c.oid, 'SELECT') "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND EXISTS "
                    "  (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid "
                    "   AND a.attname = 'tenant_id' AND NOT a.attisdropped)"
                ),
                {"role": READER_ROLE},
            )
        ).all()
    assert {"jobs", "memories", "api_keys", "event_log"} <= {row[0] for row in rows}
    unwalled = [row[0] for row in rows if not (row[1] and row[2] and row[3])]
    assert unwalled == [], f"tenant tables without a {READER_ROLE} policy: {unwalled}"
