"""S3 objects through aioboto3: put, get, list. The only home of the S3 client
(Bedrock's runtime client has its own: infra/providers/bedrock.py).

Generic on purpose: the archive writes event batches through it, other
features (batch files) can use the same port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infra.errors import PermanentError, TransientError
from infra.settings import Settings

_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"}


def _translate(exc: Exception, what: str) -> Exception:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientError(f"s3 {what}: {code or status}")
        return PermanentError(f"s3 {what}: {code or status}")
    return TransientError(f"s3 {what}: {exc}")


class ObjectStore:
    """One bucket. `start` opens the client, `close` releases it."""

    def __init__(self, settings: Settings, bucket: str | None = None) -> None:
        self.bucket = bucket or settings.s3_bucket
        self._endpoint = settings.s3_endpoint_url
        self._region = settings.s3_region
        self._credentials = {
            "aws_access_key_id": settings.aws_access_key_id,
            "aws_secret_access_key": settings.aws_secret_access_key,
        }
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def start(self) -> ObjectStore:
        session = aioboto3.Session(**self._credentials)
        config = Config(
            connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
        )
        self._client = await self._stack.enter_async_context(
            session.client(
                "s3", endpoint_url=self._endpoint, region_name=self._region, config=config
            )
        )
        return self

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def ensure_bucket(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError:
            pass
        except BotoCoreError as exc:
            raise _translate(exc, "head_bucket") from exc
        try:
            await self._client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise _translate(exc, "create_bucket") from exc
        except BotoCoreError as exc:
            raise _translate(exc, "create_bucket") from exc

    async def put(
        self, key: str, body: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        try:
            await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"put {key}") from exc

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""
        try:
            response = await self._client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as stream:
                return bytes(await stream.read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise _translate(exc, f"get {key}") from exc
        except BotoCoreError as exc:
            raise _translate(exc, f"get {key}") from exc

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        """Keys under `prefix`, in lexicographic order."""
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield str(item["Key"])
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"list {prefix}") from exc

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"delete {key}") from exc
