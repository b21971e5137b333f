"""A dependency-free embedder for development and tests.

Feature hashing of word unigrams and bigrams into a fixed number of
dimensions, then L2 normalisation: texts that share words get close vectors,
which is enough to exercise storage, search and isolation end to end. It is
not a semantic model.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
_SEEN_MAX = 50_000


class HashingEmbedder:
    def __init__(self, dim: int = 384, model: str = "local-hash") -> None:
        self.model = model
        self.dim = dim
        # Words repeat from text to text: their hashes are kept (a bounded dictionary).
        self._seen: dict[str, tuple[int, int]] = {}

    def _features(self, text: str) -> tuple[list[int], list[float]]:
        """Each word and each pair of neighbouring words: its bucket and its sign."""
        words = [w.lower() for w in _WORD.findall(text)]
        seen = self._seen
        buckets, signs = [], []
        for feature in itertools.chain(words, map(" ".join, itertools.pairwise(words))):
            found = seen.get(feature)
            if found is None:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                found = (int.from_bytes(digest[:4], "little") % self.dim, digest[4] & 1)
                if len(seen) >= _SEEN_MAX:
                    seen.clear()
                seen[feature] = found
            buckets.append(found[0])
            signs.append(1.0 if found[1] else -1.0)
        return buckets, signs

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # The sums are of small whole numbers, exact in any order: numpy gives the same
        # vectors as adding them one by one, several times faster.
        vectors = np.zeros((len(texts), self.dim))
        for row, text in enumerate(texts):
            buckets, signs = self._features(text)
            if buckets:
                vectors[row] = np.bincount(buckets, weights=signs, minlength=self.dim)
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        empty = norms == 0
        vectors[empty, 0], norms[empty] = 1.0, 1.0
        out: list[list[float]] = (vectors / norms[:, None]).tolist()
        return out
