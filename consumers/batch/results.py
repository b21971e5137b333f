"""The output and error files of a finished batch: every input line exactly once.

Succeeded lines go to the output file with OpenAI's `chat.completion` body;
failed and cancelled ones go to the error file. File ids are derived from the
batch id, so a finalization redone after a crash overwrites the same files.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from infra.db import batches as batch_store
from infra.db.engine import Database
from infra.db.models import StoredFile
from infra.files import FileStore
from schemas.chat_completions import completion_body
from schemas.ids import derived_id


def _result_line(outcome: batch_store.LineOutcome) -> tuple[bool, dict[str, Any]]:
    line, job, result = outcome.line, outcome.job, outcome.result
    base = {"id": f"batch_req_{job.id.hex}", "custom_id": line.custom_id}
    if result is not None:
        created = int(result.created_at.timestamp())
        body = completion_body(
            completion_id=f"chatcmpl-{job.id.hex}", created=created, model=result.model,
            text=result.text, finish_reason=result.finish_reason,
            input_tokens=result.input_tokens, output_tokens=result.output_tokens,
            tool_calls=result.tool_calls,
        )  # fmt: skip
        response = {"status_code": 200, "request_id": job.id.hex, "body": body}
        return True, {**base, "response": response, "error": None}
    code = "batch_cancelled" if line.status == "cancelled" else "request_failed"
    error = {"code": code, "message": job.error or line.status}
    return False, {**base, "response": None, "error": error}


async def write_results(
    db: Database, files: FileStore, tenant_id: uuid.UUID, batch_id: uuid.UUID
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """Writes the files; returns (output file id, error file id), None where a file is empty."""
    output: list[bytes] = []
    errors: list[bytes] = []
    for outcome in await batch_store.outcomes(db, batch_id):
        ok, item = _result_line(outcome)
        (output if ok else errors).append(orjson.dumps(item))
    ids: list[uuid.UUID | None] = []
    for purpose, lines in (("output", output), ("errors", errors)):
        if not lines:
            ids.append(None)
            continue
        file_id = derived_id(batch_id, purpose)
        data = b"\n".join(lines) + b"\n"
        key = f"{tenant_id}/{file_id}"
        await files.put(key, data)
        await batch_store.insert_file(
            db,
            StoredFile(
                id=file_id, tenant_id=tenant_id, filename=f"batch_{batch_id.hex}_{purpose}.jsonl",
                purpose="batch_output", bytes=len(data), storage_key=key,
            ),
        )  # fmt: skip
        ids.append(file_id)
    return ids[0], ids[1]
