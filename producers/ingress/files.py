"""The OpenAI Files API: upload, describe, download and delete files (purpose `batch`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, UploadFile
from fastapi.responses import Response

from infra.db import batches as batch_store
from infra.db.models import StoredFile
from infra.db.tenants import KeyOwner
from producers.ingress.auth import authenticate
from producers.ingress.openai_errors import OpenAIError, not_found
from producers.ingress.state import Services, services_dependency
from schemas.batches import FileObject, file_public_id, parse_public_id
from schemas.ids import uuid7

router = APIRouter(prefix="/v1/files", tags=["files"])

Owner = Annotated[KeyOwner, Depends(authenticate)]
Svc = Annotated[Services, Depends(services_dependency)]
PURPOSES = ("batch",)
READ_CHUNK = 1024 * 1024


def file_object(row: StoredFile) -> FileObject:
    return FileObject(
        id=file_public_id(row.id), bytes=row.bytes, created_at=int(row.created_at.timestamp()),
        filename=row.filename, purpose=row.purpose,
    )  # fmt: skip


async def _owned(svc: Services, owner: KeyOwner, file_id: str) -> StoredFile:
    ident = parse_public_id("file-", file_id)
    row = await batch_store.get_file(svc.db, owner.tenant_id, ident) if ident else None
    if row is None:
        raise not_found("file", file_id)
    return row


@router.post("", response_model=FileObject)
async def upload(
    file: UploadFile, purpose: Annotated[str, Form()], owner: Owner, svc: Svc
) -> FileObject:
    if purpose not in PURPOSES:
        raise OpenAIError(
            400, f"purpose must be one of {PURPOSES}", "invalid_request_error",
            "invalid_value", "purpose",
        )  # fmt: skip
    if "\x00" in (file.filename or ""):  # Postgres stores no NUL
        raise OpenAIError(
            400, "the file name holds a NUL character", "invalid_request_error",
            "invalid_value", "file",
        )  # fmt: skip
    limit = svc.settings.batch_max_bytes
    chunks, size = [], 0
    while chunk := await file.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise OpenAIError(
                413, f"the file is over {limit} bytes", "invalid_request_error",
                "file_too_large", "file",
            )  # fmt: skip
        chunks.append(chunk)
    file_id = uuid7()
    key = f"{owner.tenant_id}/{file_id}"
    await svc.files.put(key, b"".join(chunks))
    row = StoredFile(
        id=file_id, tenant_id=owner.tenant_id, filename=(file.filename or "upload.jsonl")[:500],
        purpose=purpose, bytes=size, storage_key=key,
    )  # fmt: skip
    await batch_store.insert_file(svc.db, row)
    return file_object(row)


@router.get("/{file_id}", response_model=FileObject)
async def retrieve(file_id: str, owner: Owner, svc: Svc) -> FileObject:
    return file_object(await _owned(svc, owner, file_id))


@router.get("/{file_id}/content")
async def content(file_id: str, owner: Owner, svc: Svc) -> Response:
    row = await _owned(svc, owner, file_id)
    data = await svc.files.get(row.storage_key)
    return Response(data, media_type="application/jsonl")


@router.delete("/{file_id}")
async def delete(file_id: str, owner: Owner, svc: Svc) -> dict[str, object]:
    row = await _owned(svc, owner, file_id)
    await batch_store.delete_file(svc.db, owner.tenant_id, row.id)
    await svc.files.delete(row.storage_key)
    return {"id": file_id, "object": "file", "deleted": True}
