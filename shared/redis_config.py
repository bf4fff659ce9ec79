"""Where Redis is and how to reach it securely: the TLS and Sentinel settings, parsed from the environment.

Owns the typed records `RedisTls` (a private CA, optional client certificate for mutual TLS) and `RedisSentinel`
(sentinel nodes, master name, sentinel password) and their validation. `shared/settings.py` calls
`tls_from_env` / `sentinel_from_env` (a `ValueError` here becomes its `SettingsError`); `shared/redis_conn.py`
turns them into the job store's client and the Celery broker's connection options. Nothing here opens a
connection. docs/operations.md, "Redis", describes the settings for operators.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class RedisTls:
    """TLS for every Redis connection (`rediss://`). Certificate and host name are always verified; `ca` is a
    PEM bundle path ("" = the system's trust store); `cert`/`key` are a client certificate for mutual TLS."""

    ca: str = ""
    cert: str = ""
    key: str = ""


@dataclass(frozen=True, slots=True)
class RedisSentinel:
    """Find the master through Redis Sentinel: `nodes` are (host, port) of the sentinels, `master` the name
    they monitor. The URL's host is then ignored; its database number, user name and password still apply."""

    nodes: tuple[tuple[str, int], ...]
    master: str
    password: str = field(default="", repr=False)


def is_tls_url(url: str) -> bool:
    return url.strip().lower().startswith("rediss://")


def tls_from_env(env: Mapping[str, str], url: str) -> RedisTls | None:
    """The TLS settings when `url` is `rediss://`, else None. Raises ValueError for a setting that cannot work."""
    ca = env.get("NANOEDIT_REDIS_TLS_CA", "").strip()
    cert = env.get("NANOEDIT_REDIS_TLS_CERT", "").strip()
    key = env.get("NANOEDIT_REDIS_TLS_KEY", "").strip()
    if not is_tls_url(url):
        named = [n for n, v in (("NANOEDIT_REDIS_TLS_CA", ca), ("NANOEDIT_REDIS_TLS_CERT", cert),
                                ("NANOEDIT_REDIS_TLS_KEY", key)) if v]
        if named:
            raise ValueError(f"{', '.join(named)} set but NANOEDIT_REDIS_URL is not rediss://: use a rediss:// URL "
                             "for TLS, or unset them")
        return None
    if bool(cert) != bool(key):
        raise ValueError("NANOEDIT_REDIS_TLS_CERT and NANOEDIT_REDIS_TLS_KEY go together (a client certificate "
                         "and its private key, for mutual TLS): set both or neither")
    for name, path in (("NANOEDIT_REDIS_TLS_CA", ca), ("NANOEDIT_REDIS_TLS_CERT", cert),
                       ("NANOEDIT_REDIS_TLS_KEY", key)):
        if path and not os.path.isfile(path):
            raise ValueError(f"{name}={path!r}: no such file (a PEM file readable by every nanoedit process)")
    return RedisTls(ca=ca, cert=cert, key=key)


def parse_sentinel_nodes(raw: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` (IPv6 in brackets, port 26379 when omitted) → ((host, port), ...)."""
    nodes: list[tuple[str, int]] = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        try:
            parts = urlsplit(f"//{item}")
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host or parts.path or parts.username is not None:
            raise ValueError(f"NANOEDIT_REDIS_SENTINELS: {item!r} is not host:port")
        nodes.append((host, port or DEFAULT_SENTINEL_PORT))
    return tuple(nodes)


def sentinel_from_env(env: Mapping[str, str]) -> RedisSentinel | None:
    """The Sentinel settings, or None when `NANOEDIT_REDIS_SENTINELS` is unset. Raises ValueError when half set."""
    nodes = parse_sentinel_nodes(env.get("NANOEDIT_REDIS_SENTINELS", ""))
    master = env.get("NANOEDIT_REDIS_MASTER", "").strip()
    password = env.get("NANOEDIT_REDIS_SENTINEL_PASSWORD", "").strip()
    if not nodes:
        if master or password:
            raise ValueError("NANOEDIT_REDIS_MASTER / NANOEDIT_REDIS_SENTINEL_PASSWORD need NANOEDIT_REDIS_SENTINELS "
                             "(comma-separated host:port of the sentinels)")
        return None
    if not master:
        raise ValueError("NANOEDIT_REDIS_SENTINELS needs NANOEDIT_REDIS_MASTER: the master name the sentinels "
                         "monitor (the name in their `sentinel monitor <name> ...` line)")
    return RedisSentinel(nodes=nodes, master=master, password=password)
