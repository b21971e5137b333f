"""Postgres: table models, the engine and the queries. SQLModel/asyncpg stay in here."""
