"""Splitting a memory's text into overlapping chunks that embed well."""

from __future__ import annotations


def split(text: str, size: int = 1000, overlap: int = 100) -> list[str]:
    """Chunks of at most `size` characters, cut at whitespace where possible.

    Consecutive chunks share about `overlap` characters so a fact that falls on
    a boundary is still whole in one of them.
    """
    text = text.strip()
    if len(text) <= size:
        return [text] if text else []
    overlap = min(overlap, size // 2)
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            end = cut if cut > start else end
        chunk = text[start:end].strip()
        if chunk:
            chunks.append(chunk)
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return chunks
