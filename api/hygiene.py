"""Request hygiene, checked before any route runs (docs/api.md, "Conventions"; docs/operations.md, "Safe defaults").

- `X-Request-ID` is echoed only when it is 1–64 characters of `[A-Za-z0-9._:-]`; anything else (too long, spaces,
  control characters, log-injection attempts) is replaced by a fresh id.
- `Host` must be a name this service answers for: `NANOEDIT_ALLOWED_HOSTS`, or by default the loopback names,
  `NANOEDIT_HOST` and the host of `NANOEDIT_PUBLIC_BASE_URL`. This stops DNS rebinding (a web page whose own
  name suddenly resolves to 127.0.0.1 talking to a loopback service). Answer: 421 `misdirected_request`.
  A wildcard bind (`0.0.0.0`, `::`) with auth on accepts any name unless `NANOEDIT_ALLOWED_HOSTS` is set: the
  keys protect it, and the service may be reached by names it cannot know. The probes `/healthz` and `/readyz`
  answer any Host (load balancers and kubelets call them by IP).
- With auth off, a state-changing request (POST, PUT, PATCH, DELETE) from a browser page of another origin is
  refused, 403 `forbidden`: without keys nothing else stops a page from submitting or cancelling jobs. An
  `Origin` equal to the request's own scheme://host:port (the service's own pages) or to the public base URL
  passes; a request without `Origin` (curl, SDKs, the CLI) is not a cross-site browser request.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from flask import Request

from shared.errors import ClientInputError
from shared.settings import Settings, is_loopback_host

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = ("0.0.0.0", "::", "")
_UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_PROBES = ("/healthz", "/readyz")


def request_id(presented: str | None) -> str:
    """The caller's id when it is safe to echo and log, else a new one."""
    if presented and _REQUEST_ID.fullmatch(presented):
        return presented
    return uuid.uuid4().hex


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """Host names (no port, lower case, IPv6 without brackets) this service answers for; None = any."""
    if settings.allowed_hosts:
        names = {_bare(h) for h in settings.allowed_hosts}
        return None if "*" in names else frozenset(names)
    host = _bare(settings.host)
    if host in _WILDCARDS and settings.auth_enabled:
        return None
    names = set(_LOOPBACK_NAMES)
    if host not in _WILDCARDS:
        names.add(host)
    public = urlsplit(settings.public_base_url).hostname if settings.public_base_url else None
    if public:
        names.add(public.lower())
    return frozenset(names)


def _bare(host: str) -> str:
    """`Example.COM:8000` → `example.com`; `[::1]:8000` → `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def check_host(request: Request, allowed: frozenset[str] | None) -> None:
    if allowed is None or request.path in _PROBES:
        return
    raw = request.headers.get("Host", "")
    if _bare(raw) in allowed:
        return
    shown = raw[:80].encode("ascii", "replace").decode() or "(none)"
    raise ClientInputError(f"Host {shown!r} is not a name this server answers for", code="misdirected_request")


def check_origin(request: Request, settings: Settings) -> None:
    """Cross-site state-changing browser requests are refused while auth is off."""
    if settings.auth_enabled or request.method not in _UNSAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if _same_origin(origin, request) or (settings.public_base_url and _origin_of(settings.public_base_url)
                                         == origin.strip().lower().rstrip("/")):
        return
    raise ClientInputError(f"Origin {origin[:80]!r} is not this service", code="forbidden",
                           message="Cross-site requests are refused while auth is off.",
                           suggestion="Call the API from its own pages or from a non-browser client, or turn "
                                      "auth on (NANOEDIT_API_KEYS) to serve other origins.")


def _origin_of(url: str) -> str:
    parts = urlsplit(url.strip().lower())
    return f"{parts.scheme}://{parts.netloc}"


def _same_origin(origin: str, request: Request) -> bool:
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null" (sandboxed frames, file://) included
    host = request.headers.get("Host", "").strip().lower()
    default_port = {"http": ":80", "https": ":443"}[parts.scheme]
    return parts.netloc in (host, host.removesuffix(default_port)) or f"{parts.netloc}{default_port}" == host


def insecure_bind(settings: Settings) -> bool:
    """True when the API listens beyond loopback with auth off (allowed only by NANOEDIT_ALLOW_INSECURE=1)."""
    return not settings.auth_enabled and not is_loopback_host(settings.host)
