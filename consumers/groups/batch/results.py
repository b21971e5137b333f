"""The output and error files of a finished batch: every input line exactly once.

Succeeded lines go to the output file with OpenAI's `chat.completion` body;
failed, cancelled, expired and over-budget ones go to the error file. The lines stream
from the database in input order and each file is written once. File ids are
derived from the batch id, so a finalization redone after a crash overwrites
the same files.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from infra.db import batch_progress
from infra.db import batches as batch_store
from infra.db.engine import Database
from infra.db.models import StoredFile
from infra.files import FileStore
from schemas.chat_completions import completion_body
from schemas.ids import derived_id

# The error file's code for a line that did not run, by the line's status.
NOT_RUN = {"cancelled": "batch_cancelled", "expired": "batch_expired", "refused": "budget_exceeded"}


def _result_line(line: batch_progress.LineResult) -> tuple[bool, dict[str, Any]]:
    base = {"id": f"batch_req_{line.job_id.hex}", "custom_id": line.custom_id}
    if line.status == "succeeded" and line.text is not None:
        created = int(line.created_at.timestamp()) if line.created_at else 0
        body = completion_body(
            completion_id=f"chatcmpl-{line.job_id.hex}",
            created=created,
            model=line.model or "",
            text=line.text,
            finish_reason=line.finish_reason,
            input_tokens=line.input_tokens,
            output_tokens=line.output_tokens,
            tool_calls=line.tool_calls,
        )
        response = {"status_code": 200, "request_id": line.job_id.hex, "body": body}
        return True, {**base, "response": response, "error": None}
    code = NOT_RUN.get(line.status, "request_failed")
    message = f"batch {line.status}" if line.status in ("cancelled", "expired") else line.error
    error = {"code": code, "message": message or line.status}
    return False, {**base, "response": None, "error": error}


async def write_results(
    db: Database,
    files: FileStore,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    user_id: str | None = None,
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """Writes the files; returns (output file id, error file id), None where a file is empty."""
    output = bytearray()
    errors = bytearray()
    async for line in batch_progress.line_results(db, batch_id):
        ok, item = _result_line(line)
        (output if ok else errors).extend(orjson.dumps(item) + b"\n")
    ids: list[uuid.UUID | None] = []
    for purpose, data in (("output", output), ("errors", errors)):
        if not data:
            ids.append(None)
            continue
        file_id = derived_id(batch_id, purpose)
        key = f"{tenant_id}/{file_id}"
        await files.put(key, bytes(data))
        await batch_store.insert_file(
            db,
            StoredFile(
                id=file_id,
                tenant_id=tenant_id,
                user_id=user_id,
                filename=f"batch_{batch_id.hex}_{purpose}.jsonl",
                purpose="batch_output",
                bytes=len(data),
                storage_key=key,
            ),
        )
        ids.append(file_id)
    return ids[0], ids[1]
