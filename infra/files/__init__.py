"""Where uploaded and generated files live: a local folder or S3."""

from __future__ import annotations

from infra.files.base import FileStore
from infra.files.local import LocalFileStore
from infra.settings import Settings

__all__ = ["FileStore", "LocalFileStore", "open_file_store"]


def open_file_store(settings: Settings) -> FileStore:
    """The store the settings ask for; the S3 adapter is imported only when it is used."""
    if settings.file_backend() == "s3":
        from infra.files.s3 import S3FileStore

        return S3FileStore(settings)
    return LocalFileStore(settings.files_root())
