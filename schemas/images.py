"""Which image references a request may carry: what every vendor that sees images takes."""

from __future__ import annotations

import re

_IMAGE_DATA_URL = re.compile(r"data:image/(png|jpeg|gif|webp);base64,")


def check_image_url(url: str) -> str:
    """`url` when it is an http(s) URL or an inline data:image URL; ValueError otherwise."""
    if url.startswith(("https://", "http://")) or _IMAGE_DATA_URL.match(url[:64]):
        return url
    raise ValueError("an image is an http(s) URL or a data:image/(png|jpeg|gif|webp) URL")
