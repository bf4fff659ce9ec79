"""The S3-compatible blob store (`NANOEDIT_BLOB_URL=s3://bucket/prefix`): AWS S3, MinIO, R2, moto.

`S3BlobStore` implements the `shared.blobs.BlobStore` contract over boto3 with the same keys (`jobs/{id}/...`)
under the URL's prefix, so web and workers on different hosts share blobs without a shared disk. It owns the
translation of boto3's failures: a missing object is `FileNotFoundError` (as in the filesystem backend, which
the result-cache and reference paths rely on); anything else from the store or the network (endpoint down,
timeouts, access denied, no credentials) is `BlobStoreUnavailable` (503 `storage_unavailable` in the API,
transient in the workers), with the error code only, never the library's message.

boto3 is imported here only, lazily in `from_settings`, so a process on the file backend never loads it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.errors import BlobStoreUnavailable

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger("nanoedit.blobs")

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 3  # botocore "standard" retries: throttling, 5xx and connection errors, with jittered backoff
DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def _pool_size(settings: Settings) -> int:
    """HTTP connections kept per process: enough for every request a web worker serves at once (gthread: its
    threads; gevent: the greenlets downloading at the same time, capped), a few for a worker process."""
    if settings.web_worker_class == "gthread":
        return max(10, settings.web_threads + 2)
    return min(64, max(10, settings.web_worker_connections))


class S3BlobStore:
    """Blobs as objects in one bucket under a key prefix."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", *, page_size: int = 1000,
                 delete_batch: int = DELETE_BATCH) -> None:
        self._s3 = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # list_objects_v2 page and DeleteObjects batch (≤ 1000); tests make them small to exercise both loops.
        self.page_size = page_size
        self.delete_batch = min(delete_batch, DELETE_BATCH)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        import boto3
        from botocore.config import Config

        config = Config(
            region_name=settings.blob.region,
            signature_version="s3v4",
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
            max_pool_connections=_pool_size(settings),
            # boto3 ≥ 1.36 adds CRC checksums to every upload and validates them on download by default; many
            # S3-compatible stores reject or mangle those, so only send them where an operation requires one.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Custom endpoints (MinIO, moto, most self-hosted stores) serve buckets by path, not by host name.
            s3={"addressing_style": "path" if settings.blob.endpoint_url else "auto"},
        )
        client = boto3.session.Session().client("s3", endpoint_url=settings.blob.endpoint_url or None,
                                                config=config)
        return cls(client, settings.blob.bucket, settings.blob.prefix)

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid blob key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, op: str, **kwargs: Any) -> Any:
        """One client call; every failure but a missing object becomes `BlobStoreUnavailable`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._s3, op)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise FileNotFoundError(kwargs.get("Key", "")) from None
            log.warning("blob store refused a request", extra={"op": op, "error_code": code})
            raise BlobStoreUnavailable(f"object store: {op} failed ({code or 'error'})") from None
        except BotoCoreError as exc:  # connection refused, timeouts, no credentials, ...
            log.warning("blob store unreachable", extra={"op": op, "error": type(exc).__name__})
            raise BlobStoreUnavailable(f"object store: {op} failed ({type(exc).__name__})") from None

    def put(self, key: str, data: bytes) -> None:
        # One PUT is atomic in S3: readers see the old object, no object, or the whole new one.
        self._call("put_object", Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        body = self._call("get_object", Key=self._key(key))["Body"]
        try:
            return bytes(body.read())
        except Exception as exc:  # the connection dropped mid-body
            raise BlobStoreUnavailable(f"object store: reading {key} failed ({type(exc).__name__})") from None
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", Key=self._key(key))
        except FileNotFoundError:
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete the object `prefix` and every object under `prefix/`; returns how many were deleted."""
        full = self._key(prefix)
        doomed: list[str] = []
        token: str | None = None
        while True:
            page = self._call("list_objects_v2", Prefix=full, MaxKeys=self.page_size,
                              **({"ContinuationToken": token} if token else {}))
            doomed.extend(k for o in page.get("Contents", []) if (k := o["Key"]) == full or k.startswith(full + "/"))
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]
        deleted = 0
        for start in range(0, len(doomed), self.delete_batch):
            batch = doomed[start:start + self.delete_batch]
            answer = self._call("delete_objects", Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            errors = answer.get("Errors", [])
            if errors:
                code = str(errors[0].get("Code", ""))
                log.warning("blob store kept objects", extra={"op": "delete_objects", "error_code": code,
                                                              "count": len(errors)})
                raise BlobStoreUnavailable(f"object store: delete_objects kept {len(errors)} object(s) ({code})")
            deleted += len(batch)
        return deleted

    def presigned_get(self, key: str, ttl_s: int, *, content_type: str, filename: str) -> str | None:
        """A GET URL for `key` valid `ttl_s` seconds that answers with this type and file name (signing is
        local: no request to the store)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return str(self._s3.generate_presigned_url(
                "get_object", ExpiresIn=ttl_s,
                Params={"Bucket": self.bucket, "Key": self._key(key), "ResponseContentType": content_type,
                        "ResponseContentDisposition": f'inline; filename="{filename}"'}))
        except (BotoCoreError, ClientError) as exc:  # e.g. no credentials to sign with
            raise BlobStoreUnavailable(f"object store: presigning failed ({type(exc).__name__})") from None
