"""Kafka, Postgres and Redis started by the project itself, on loopback.

Used by `ayush dev` and by the test session when no service address is set
in the environment. Each service keeps its data under one folder.
"""

from infra.local_stack.stack import LocalStack, ServiceAddresses

__all__ = ["LocalStack", "ServiceAddresses"]
