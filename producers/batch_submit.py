"""`ayush batch submit`: upload a JSONL file as a batch, follow it, download the results.

Speaks only the public HTTP API (the same calls the OpenAI SDK makes), so it
works against any Ayush deployment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ENDPOINT = "/v1/chat/completions"
FINISHED = ("completed", "failed", "cancelled", "expired")


class SubmitError(Exception):
    """A problem the user can fix; the message says what and where."""


@dataclass(frozen=True)
class Outcome:
    status: str
    output: Path | None
    errors: Path | None


def prepare_lines(data: bytes, model: str | None) -> bytes:
    """Checks every line and fills in the defaults (method, url and, if given, the model)."""
    out = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SubmitError(f"line {number}: not valid JSON ({exc})") from exc
        if not isinstance(item, dict) or not isinstance(item.get("body"), dict):
            raise SubmitError(f"line {number}: expected an object with a 'body' object")
        if not item.get("custom_id"):
            raise SubmitError(f"line {number}: 'custom_id' is missing")
        item.setdefault("method", "POST")
        item.setdefault("url", ENDPOINT)
        if model:
            item["body"]["model"] = model
        elif not item["body"].get("model"):
            raise SubmitError(f"line {number}: no model in the body; pass --model")
        out.append(orjson.dumps(item))
    if not out:
        raise SubmitError("the file has no requests")
    return b"\n".join(out) + b"\n"


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            error = response.json().get("error")
            message = error.get("message") if isinstance(error, dict) else response.text
        except ValueError:
            message = response.text
        raise SubmitError(f"the server answered {response.status_code}: {message}")
    return response.json()


def submit(
    url: str, api_key: str, path: Path, model: str | None, out_dir: Path, console: Console
) -> Outcome:
    payload = prepare_lines(path.read_bytes(), model)
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60) as http:
        try:
            uploaded = _check(http.post("/v1/files", data={"purpose": "batch"},
                                        files={"file": (path.name, payload)}))  # fmt: skip
            batch = _check(http.post("/v1/batches", json={
                "input_file_id": uploaded["id"], "endpoint": ENDPOINT, "completion_window": "24h",
            }))  # fmt: skip
            console.print(f"batch {batch['id']} created from {path}")
            batch = _follow(http, batch, console)
        except httpx.HTTPError as exc:
            raise SubmitError(f"cannot reach {url}: {exc}") from exc
        if batch["status"] == "failed":
            errors = (batch.get("errors") or {}).get("data") or []
            lines = [f"  line {e.get('line')}: {e.get('message')}" for e in errors]
            raise SubmitError("the batch was refused:\n" + "\n".join(lines))
        out_dir.mkdir(parents=True, exist_ok=True)
        saved: list[Path | None] = []
        for key, suffix in (("output_file_id", "output"), ("error_file_id", "errors")):
            file_id = batch.get(key)
            if not file_id:
                saved.append(None)
                continue
            target = out_dir / f"{path.stem}.{suffix}.jsonl"
            response = http.get(f"/v1/files/{file_id}/content")
            if response.status_code >= 400:
                _check(response)
            target.write_bytes(response.content)
            saved.append(target)
    return Outcome(batch["status"], saved[0], saved[1])


def _follow(http: httpx.Client, batch: dict[str, Any], console: Console) -> dict[str, Any]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(batch["status"], total=None, failed=0)
        while batch["status"] not in FINISHED:
            time.sleep(0.5)
            batch = _check(http.get(f"/v1/batches/{batch['id']}"))
            counts = batch["request_counts"]
            progress.update(
                task, description=batch["status"], total=counts["total"] or None,
                completed=counts["completed"] + counts["failed"], failed=counts["failed"],
            )  # fmt: skip
    return batch
