"""Blob storage for image bytes: inputs, prepared inputs and outputs. Never Redis, never Celery messages.

`BlobStore` is the interface; `FilesystemBlobStore` is the default, under NANOEDIT_DATA_DIR/blobs (or the
directory of a `file://` NANOEDIT_BLOB_URL); `shared/blobs_s3.py` is the S3-compatible object store
(`s3://bucket/prefix`). `blob_store(settings)` picks one; `monitoring/runtime.build_runtime` is its one caller.
Writes are atomic (temp file + rename; one PUT on S3) so a reader never sees half a blob and a redelivered task
that finds a blob can trust it. A missing blob is `FileNotFoundError` in every backend; a store that cannot be
reached is `shared.errors.BlobStoreUnavailable`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from shared.greenlets import offload

if TYPE_CHECKING:
    from shared.settings import Settings

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,255}$")


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def presigned_get(self, key: str, ttl_s: int, *, content_type: str, filename: str) -> str | None:
        """A short-lived URL a client can GET the blob from directly, or None if this store has none."""
        ...


def blob_store(settings: Settings) -> BlobStore:
    """The store NANOEDIT_BLOB_URL names: S3-compatible for `s3://`, else files (the default)."""
    if settings.blob.backend == "s3":
        from shared.blobs_s3 import S3BlobStore  # boto3 loads only in processes that use it

        return S3BlobStore.from_settings(settings)
    return FilesystemBlobStore(settings.blob_dir)


def input_key(job_id: str, index: int) -> str:
    return f"jobs/{job_id}/inputs/{index}"


def prepared_key(job_id: str, index: int) -> str:
    return f"jobs/{job_id}/prepared/{index}"


def output_key(job_id: str, index: int) -> str:
    return f"jobs/{job_id}/outputs/{index}"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}"


class FilesystemBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key.split("/"):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        # fsync waits for the disk: on a native thread in a gevent process, so other requests go on meanwhile.
        offload(self._write, self._path(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        path = self._path(prefix)
        if not path.exists():
            return 0
        if path.is_file():
            path.unlink()
            return 1
        count = sum(1 for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path, ignore_errors=True)
        return count

    def presigned_get(self, key: str, ttl_s: int, *, content_type: str, filename: str) -> str | None:
        return None  # a local file has no URL: the API streams it


class MemoryBlobStore:
    """Stub backend for unit tests."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        self.blobs[key] = data

    def get(self, key: str) -> bytes:
        try:
            return self.blobs[key]
        except KeyError:
            raise FileNotFoundError(key) from None

    def exists(self, key: str) -> bool:
        return key in self.blobs

    def delete_prefix(self, prefix: str) -> int:
        doomed = [k for k in self.blobs if k == prefix or k.startswith(prefix + "/")]
        for k in doomed:
            del self.blobs[k]
        return len(doomed)

    def presigned_get(self, key: str, ttl_s: int, *, content_type: str, filename: str) -> str | None:
        return None
