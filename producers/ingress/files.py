"""The OpenAI Files API: upload, describe, download and delete files (purpose `batch`).

An upload is authenticated before a byte of its body is read, and its body is
capped (producers.ingress.body): FastAPI would parse a declared form first,
spooling files of any size to disk, so the route reads its form itself.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from infra.db import batches as batch_store
from infra.db.models import StoredFile
from producers.ingress.auth import Authenticated
from producers.ingress.body import BodyTooLarge, allow_body
from producers.ingress.caller import Caller
from producers.ingress.openai_errors import OpenAIError, not_found
from producers.ingress.scope import visible
from producers.ingress.state import Services, Svc
from schemas.batches import FileObject, file_public_id, parse_public_id
from schemas.ids import uuid7

router = APIRouter(prefix="/v1/files", tags=["files"])

PURPOSES = ("batch",)
READ_CHUNK = 1024 * 1024
# Room in an upload's body for the multipart framing and the `purpose` field.
FORM_OVERHEAD = 64 * 1024
MAX_FORM_FIELDS = 8  # `purpose`, and what SDKs may add (`expires_after[...]`)
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "contentMediaType": "application/octet-stream"},
                        "purpose": {"type": "string", "enum": list(PURPOSES)},
                    },
                }
            }
        },
    }
}


def file_object(row: StoredFile) -> FileObject:
    return FileObject(
        id=file_public_id(row.id),
        bytes=row.bytes,
        created_at=int(row.created_at.timestamp()),
        filename=row.filename,
        purpose=row.purpose,
    )


async def owned_file(svc: Services, caller: Caller, file_id: str) -> StoredFile:
    """The caller's file: of its tenant and, for a signed-in user, uploaded by that user."""
    ident = parse_public_id("file-", file_id)
    row = await batch_store.get_file(svc.db, caller.tenant_id, ident) if ident else None
    if row is None or not visible(caller, row.user_id):
        raise not_found("file", file_id)
    return row


@router.post("", response_model=FileObject, openapi_extra=UPLOAD_BODY)
async def upload(request: Request, caller: Authenticated, svc: Svc) -> FileObject:
    limit = svc.settings.batch_max_bytes
    allow_body(request, limit + FORM_OVERHEAD)
    try:
        async with request.form(max_files=1, max_fields=MAX_FORM_FIELDS) as form:
            file, purpose = form.get("file"), form.get("purpose")
            if not isinstance(file, UploadFile):
                raise _missing("file")
            if not isinstance(purpose, str):
                raise _missing("purpose")
            if purpose not in PURPOSES:
                raise OpenAIError(
                    400,
                    f"purpose must be one of {PURPOSES}",
                    "invalid_request_error",
                    "invalid_value",
                    "purpose",
                )
            if "\x00" in (file.filename or ""):  # Postgres stores no NUL
                raise OpenAIError(
                    400,
                    "the file name holds a NUL character",
                    "invalid_request_error",
                    "invalid_value",
                    "file",
                )
            chunks, size = [], 0
            while chunk := await file.read(READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            filename = file.filename
    except BodyTooLarge as exc:
        raise _too_large(limit) from exc
    file_id = uuid7()
    key = f"{caller.tenant_id}/{file_id}"
    await svc.files.put(key, b"".join(chunks))
    row = StoredFile(
        id=file_id,
        tenant_id=caller.tenant_id,
        user_id=caller.own_user,
        filename=(filename or "upload.jsonl")[:500],
        purpose=purpose,
        bytes=size,
        storage_key=key,
    )
    await batch_store.insert_file(svc.db, row)
    return file_object(row)


def _missing(name: str) -> RequestValidationError:
    error = {"loc": ("body", name), "msg": "Field required", "type": "missing"}
    return RequestValidationError([error])


def _too_large(limit: int) -> OpenAIError:
    return OpenAIError(
        413, f"the file is over {limit} bytes", "invalid_request_error", "file_too_large", "file"
    )


@router.get("/{file_id}", response_model=FileObject)
async def retrieve(file_id: str, caller: Authenticated, svc: Svc) -> FileObject:
    return file_object(await owned_file(svc, caller, file_id))


@router.get("/{file_id}/content")
async def content(file_id: str, caller: Authenticated, svc: Svc) -> Response:
    row = await owned_file(svc, caller, file_id)
    data = await svc.files.get(row.storage_key)
    return Response(data, media_type="application/jsonl")


@router.delete("/{file_id}")
async def delete(file_id: str, caller: Authenticated, svc: Svc) -> dict[str, object]:
    row = await owned_file(svc, caller, file_id)
    await batch_store.delete_file(svc.db, caller.tenant_id, row.id)
    await svc.files.delete(row.storage_key)
    return {"id": file_id, "object": "file", "deleted": True}
