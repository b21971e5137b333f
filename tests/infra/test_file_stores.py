"""One contract for every file store: the local folder and S3 (moto's server, real aioboto3)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from infra.errors import PermanentError
from infra.files import FileStore, LocalFileStore
from infra.files.s3 import S3FileStore
from infra.local_stack.process import free_port
from infra.settings import Settings
from tests.harness import unique


@pytest.fixture(scope="module")
def s3_endpoint(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    monkeypatch_module.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch_module.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str
) -> AsyncIterator[FileStore]:
    made: FileStore
    if request.param == "local":
        made = LocalFileStore(tmp_path / "files")
    else:
        settings = Settings(s3_endpoint_url=s3_endpoint)
        made = S3FileStore(settings, bucket=unique("bucket-"))
    yield made
    await made.close()


async def test_put_get_list_delete(store: FileStore) -> None:
    await store.put("t1/a", b"alpha\n")
    await store.put("t1/b", b"")
    await store.put("t2/c", b"\x00\xff")
    assert await store.get("t1/a") == b"alpha\n"
    assert await store.get("t2/c") == b"\x00\xff"
    assert await store.list("t1/") == ["t1/a", "t1/b"]
    await store.put("t1/a", b"replaced")
    assert await store.get("t1/a") == b"replaced"
    await store.delete("t1/a")
    await store.delete("t1/a")  # deleting again is fine
    assert await store.list("t1/") == ["t1/b"]
    with pytest.raises(PermanentError):
        await store.get("t1/a")


def test_settings_pick_the_backend(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).file_backend() == "local"
    assert Settings(data_dir=tmp_path).files_root() == tmp_path / "files"
    assert Settings(s3_endpoint_url="http://s3:9000").file_backend() == "s3"
    assert Settings(files_backend="s3").file_backend() == "s3"
