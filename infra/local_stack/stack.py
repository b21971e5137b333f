"""Start and stop the whole local service stack."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local_stack.kafka import start_kafka
from infra.local_stack.postgres import LocalPostgres
from infra.local_stack.process import ManagedProcess
from infra.local_stack.redis import start_redis
from infra.local_stack.s3 import start_s3
from infra.settings import Settings

SERVICES = ("kafka", "postgres", "redis", "s3")


@dataclass(frozen=True)
class ServiceAddresses:
    kafka_bootstrap_servers: str
    database_url: str
    redis_url: str
    kafka_flavour: str  # "apache", "tansu" or "external"
    s3_endpoint_url: str = ""

    def as_env(self) -> dict[str, str]:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
        }
        if self.s3_endpoint_url:
            env["S3_ENDPOINT_URL"] = self.s3_endpoint_url
            # moto accepts any credentials; real deployments bring their own.
            env.setdefault("AWS_ACCESS_KEY_ID", os.environ.get("AWS_ACCESS_KEY_ID", "local"))
            env.setdefault(
                "AWS_SECRET_ACCESS_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY", "local")
            )
        if self.kafka_flavour == "tansu":
            env["AYUSH_KAFKA_IDEMPOTENT_PRODUCER"] = "false"
            env["AYUSH_KAFKA_FETCH_MAX_WAIT_MS"] = "5"
        return env

    def apply(self, settings: Settings) -> Settings:
        """`settings` with these addresses; a service not started (empty) is left as it was."""
        update: dict[str, Any] = {
            name: value
            for name, value in (
                ("kafka_bootstrap_servers", self.kafka_bootstrap_servers),
                ("database_url", self.database_url),
                ("redis_url", self.redis_url),
            )
            if value
        }
        if self.s3_endpoint_url:
            update["s3_endpoint_url"] = self.s3_endpoint_url
            if not settings.aws_access_key_id:
                update |= {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        if self.kafka_flavour == "tansu":
            update |= {"kafka_idempotent_producer": False, "kafka_fetch_max_wait_ms": 5}
        return settings.model_copy(update=update)


@dataclass
class LocalStack:
    """Services started for this process; anything set in the environment is used as is."""

    addresses: ServiceAddresses
    processes: list[ManagedProcess] = field(default_factory=list)
    postgres: LocalPostgres | None = None

    @classmethod
    def start(
        cls, settings: Settings, data_dir: Path | None = None, only: Collection[str] = SERVICES
    ) -> LocalStack:
        """Starts each service of `only` (all by default) that the settings do not name."""
        data_dir = data_dir or settings.data_dir
        processes: list[ManagedProcess] = []
        postgres: LocalPostgres | None = None
        stack = cls(ServiceAddresses("", "", "", "external"), processes)
        try:
            bootstrap, flavour = settings.kafka_bootstrap_servers, "external"
            if not bootstrap and "kafka" in only:
                flavour_wanted = os.environ.get("AYUSH_LOCAL_KAFKA", "auto")
                proc, bootstrap, flavour = start_kafka(data_dir, flavour_wanted)
                processes.append(proc)
            database_url = settings.database_url
            if not database_url and "postgres" in only:
                postgres = LocalPostgres(data_dir / "postgres")
                stack.postgres = postgres
                database_url = postgres.url
            redis_url = settings.redis_url
            if not redis_url and "redis" in only:
                proc, redis_url = start_redis(data_dir / "redis")
                processes.append(proc)
            s3_url = settings.s3_endpoint_url
            if not s3_url and "s3" in only:
                proc, s3_url = start_s3(data_dir / "s3")
                processes.append(proc)
        except BaseException:
            stack.stop()
            raise
        stack.addresses = ServiceAddresses(
            bootstrap or "", database_url or "", redis_url or "", flavour, s3_url or ""
        )
        return stack

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
