"""Where image bytes live: the blob store settings, parsed from the environment.

Owns the typed record `BlobConfig` (file directory or S3 bucket and prefix, endpoint, region, download redirects)
and its validation. `shared/settings.py` calls `blob_config_from_env` (a `ValueError` here becomes its
`SettingsError`); `shared/blobs.blob_store` builds the store from it. Nothing here opens a connection.
docs/operations.md, "Object storage", describes the settings for operators.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
PRESIGN_MAX_S = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live


@dataclass(frozen=True, slots=True)
class BlobConfig:
    """`backend` "file": blobs under `root` (None = NANOEDIT_DATA_DIR/blobs); "s3": objects in `bucket` under
    `prefix` (no slashes at either end; "" = the bucket's root), at `endpoint_url` ("" = AWS) in `region`.
    `redirects` (s3 only): downloads answer 307 to a presigned URL valid `redirect_ttl_s` seconds."""

    backend: str = "file"
    root: Path | None = None
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str = ""
    region: str = "us-east-1"
    redirects: bool = False
    redirect_ttl_s: int = 300


def _ttl(env: Mapping[str, str]) -> int:
    raw = env.get("NANOEDIT_BLOB_REDIRECT_TTL_S", "").strip()
    try:
        ttl = int(raw) if raw else 300
    except ValueError:
        raise ValueError(f"NANOEDIT_BLOB_REDIRECT_TTL_S={raw!r} is not an integer") from None
    if not 1 <= ttl <= PRESIGN_MAX_S:
        raise ValueError(f"NANOEDIT_BLOB_REDIRECT_TTL_S={ttl}: use 1 .. {PRESIGN_MAX_S} seconds (7 days, the "
                         "longest a presigned URL may live)")
    return ttl


def blob_config_from_env(env: Mapping[str, str]) -> BlobConfig:
    """NANOEDIT_BLOB_URL ("" = the file default), NANOEDIT_S3_ENDPOINT_URL, AWS_REGION / AWS_DEFAULT_REGION,
    NANOEDIT_BLOB_REDIRECTS and NANOEDIT_BLOB_REDIRECT_TTL_S, checked together."""
    raw = env.get("NANOEDIT_BLOB_URL", "").strip()
    redirects = env.get("NANOEDIT_BLOB_REDIRECTS", "").strip().lower() in ("1", "true", "yes", "on")
    endpoint = env.get("NANOEDIT_S3_ENDPOINT_URL", "").strip()
    region = env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip() or "us-east-1"
    ttl = _ttl(env)
    parts = urlsplit(raw)
    if endpoint and (urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).hostname):
        raise ValueError(f"NANOEDIT_S3_ENDPOINT_URL={endpoint!r}: use an http(s) URL, e.g. http://127.0.0.1:9000")
    if redirects and parts.scheme != "s3":
        raise ValueError("NANOEDIT_BLOB_REDIRECTS=1 needs an object store (NANOEDIT_BLOB_URL=s3://bucket/prefix): "
                         "files on a local disk have no URL to redirect to")
    if not raw:
        return BlobConfig(region=region, endpoint_url=endpoint)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/") or parts.query:
            raise ValueError(f"NANOEDIT_BLOB_URL={raw!r}: a file URL names an absolute directory, e.g. "
                             "file:///srv/nanoedit/blobs")
        return BlobConfig(root=Path(unquote(parts.path)), region=region, endpoint_url=endpoint)
    if parts.scheme != "s3":
        raise ValueError(f"NANOEDIT_BLOB_URL={raw!r}: unknown scheme {parts.scheme!r}; use file:///absolute/path "
                         "or s3://bucket/prefix")
    if not _BUCKET.match(parts.netloc):
        raise ValueError(f"NANOEDIT_BLOB_URL={raw!r}: name the bucket (3-63 characters a-z 0-9 . - _), e.g. "
                         "s3://my-bucket/nanoedit")
    if ".." in parts.path.split("/") or parts.query or parts.fragment:
        raise ValueError(f"NANOEDIT_BLOB_URL={raw!r}: the prefix after the bucket may not contain '..', '?' or '#'")
    return BlobConfig(backend="s3", bucket=parts.netloc, prefix=parts.path.strip("/"), endpoint_url=endpoint,
                      region=region, redirects=redirects, redirect_ttl_s=ttl)
