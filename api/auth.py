"""Who is calling: API keys → an opaque owner id; admin token for operator routes.

With NANOEDIT_API_KEYS unset, auth is off (development): every caller is `anonymous` and a loud warning is
logged at start-up. Keys are compared in constant time and never stored or logged: the owner id is a hash.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Request

from shared.errors import NanoeditError
from shared.settings import Settings

ANONYMOUS = "anonymous"


def _presented_key(request: Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-API-Key", "").strip()


def owner_id(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def caller(settings: Settings, request: Request) -> str:
    """The owner id of the caller; raises `unauthorized` when auth is on and no valid key is presented."""
    if not settings.auth_enabled:
        return ANONYMOUS
    key = _presented_key(request)
    if key and any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_keys):
        return owner_id(key)
    raise NanoeditError("missing or unknown API key" if key else "no API key presented", code="unauthorized")


def require_admin(settings: Settings, request: Request) -> None:
    """Operator routes: open when auth is off; otherwise the admin token (Bearer or X-Admin-Token)."""
    if not settings.auth_enabled and not settings.admin_token:
        return
    token = request.headers.get("X-Admin-Token", "").strip() or _presented_key(request)
    if settings.admin_token and token and hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        return
    raise NanoeditError("this route needs the admin token", code="forbidden" if token else "unauthorized",
                        suggestion="Send 'Authorization: Bearer <NANOEDIT_ADMIN_TOKEN>'.")
