"""Reading a batch input file: every line checked before any work starts."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from infra.errors import ModelNotPriced, PermanentError
from infra.routing.catalog import ModelCatalog
from infra.routing.tiers import NoTierFits, routed
from schemas.batches import LineError
from schemas.chat_completions import BodyError, chat_job_from_body
from schemas.jobs import ChatJob, as_user, other_user

MAX_ERRORS = 100  # enough to fix a file; a huge broken file should not make a huge batch row


@dataclass(frozen=True)
class BatchRequest:
    line_no: int  # 1-based, as editors count
    custom_id: str
    job: ChatJob


def parse_input(
    data: bytes,
    *,
    endpoint: str,
    max_requests: int,
    max_bytes: int,
    models: ModelCatalog,
    user_id: str | None = None,
) -> tuple[list[BatchRequest], list[LineError]]:
    """The requests of an input file, or the errors that refuse it (with line numbers).

    A signed-in user's batch (`user_id`) runs every line as that user: a line naming
    another user is refused, as the ingress refuses such a request."""
    if len(data) > max_bytes:
        message = f"the file is {len(data)} bytes; the limit is {max_bytes}"
        return [], [LineError(code="file_too_large", message=message)]
    lines = data.splitlines()
    # Counted before any line is parsed: a file over the limit costs no more than its count.
    count = _count_requests(lines, stop_after=max_requests)
    if count > max_requests:
        message = (
            f"the file has more than {max_requests} requests; the limit is {max_requests} "
            "per batch: split it into several batches"
        )
        return [], [LineError(code="too_many_requests", message=message)]
    requests: list[BatchRequest] = []
    errors: list[LineError] = []
    seen: dict[str, int] = {}
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            request = _parse_line(raw, line_no, endpoint, models, user_id)
        except _LineRefused as refused:
            errors.append(refused.error)
        else:
            first = seen.setdefault(request.custom_id, line_no)
            if first != line_no:
                message = f"custom_id {request.custom_id!r} is also on line {first}"
                errors.append(
                    LineError(
                        code="duplicate_custom_id", line=line_no, param="custom_id", message=message
                    )
                )
            requests.append(request)
        if len(errors) >= MAX_ERRORS:
            break
    if not errors and not requests:
        errors.append(LineError(code="empty_file", message="the file has no requests"))
    return (requests if not errors else []), errors


def _count_requests(lines: list[bytes], *, stop_after: int) -> int:
    """The non-blank lines, counted up to one past `stop_after` and no further."""
    count = 0
    for raw in lines:
        if raw.strip():
            count += 1
            if count > stop_after:
                break
    return count


class _LineRefused(Exception):
    def __init__(self, error: LineError) -> None:
        super().__init__(error.message)
        self.error = error


def _refuse(line_no: int, code: str, message: str, param: str | None = None) -> _LineRefused:
    return _LineRefused(LineError(code=code, message=message, param=param, line=line_no))


def _parse_line(
    raw: bytes, line_no: int, endpoint: str, models: ModelCatalog, user_id: str | None
) -> BatchRequest:
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _refuse(line_no, "invalid_json_line", f"not valid JSON: {exc}") from exc
    if not isinstance(item, dict):
        raise _refuse(line_no, "invalid_request", "a line must be a JSON object")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > 500:
        raise _refuse(
            line_no,
            "missing_required_parameter",
            "custom_id must be a non-empty string",
            "custom_id",
        )
    if "\x00" in custom_id:  # stored as text, where Postgres takes no NUL
        raise _refuse(line_no, "invalid_value", "custom_id holds a NUL character", "custom_id")
    if item.get("method", "POST") != "POST":
        raise _refuse(line_no, "invalid_value", "method must be POST", "method")
    if item.get("url") != endpoint:
        raise _refuse(
            line_no, "mismatched_endpoint", f"url must be the batch's endpoint {endpoint}", "url"
        )
    try:
        job = chat_job_from_body(item.get("body"), metadata={"custom_id": custom_id[:200]})
    except BodyError as exc:
        raise _refuse(line_no, "invalid_request", str(exc), exc.param) from exc
    route = models.routing.routes.get(job.model)
    if route is not None:  # `model: "auto"` …: the model its rules choose, as at the ingress
        try:
            job = routed(route, job)
        except NoTierFits as exc:
            raise _refuse(line_no, exc.code, str(exc), "body.model") from exc
    try:  # as the ingress: a model no route serves, or without a price, is refused
        models.check(job.model)
    except ModelNotPriced as exc:
        raise _refuse(line_no, exc.code, str(exc), "body.model") from exc
    except PermanentError as exc:
        raise _refuse(line_no, "model_not_found", str(exc), "body.model") from exc
    if user_id is not None:
        field = other_user(job, user_id)
        if field is not None:
            message = "the line names another user than the batch's"
            raise _refuse(line_no, "forbidden", message, f"body.{field}")
        job = as_user(job, user_id)
    return BatchRequest(line_no, custom_id, job)
