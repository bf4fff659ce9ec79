"""Who is calling: an API key → its `ApiKey` entry and opaque owner id; the admin token for operator routes.

With no keys configured (NANOEDIT_API_KEYS and NANOEDIT_API_KEYS_FILE unset), auth is off (development): every
caller is `anonymous` and a loud warning is logged at start-up. Keys are looked up by keyed hash
(`shared.apikeys.KeyRing`) and never stored or logged.
"""

from __future__ import annotations

import hmac

from flask import Request, g

from api.services import services
from shared.apikeys import ANONYMOUS, ApiKey, KeyRing
from shared.errors import NanoeditError
from shared.settings import Settings

__all__ = ["ANONYMOUS", "caller", "caller_key", "require_admin"]


def _presented_key(request: Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-API-Key", "").strip()


def caller_key(settings: Settings, keyring: KeyRing, request: Request) -> ApiKey | None:
    """The caller's key (None when auth is off); raises `unauthorized` when auth is on and no valid key is
    presented. Remembered for the request, so limits and routes agree on who called."""
    if not settings.auth_enabled:
        return None
    if "api_key" in g:
        key: ApiKey = g.api_key
        return key
    presented = _presented_key(request)
    found = keyring.identify(presented)
    if found is None:
        raise NanoeditError("missing or unknown API key" if presented else "no API key presented",
                            code="unauthorized")
    g.api_key = found
    return found


def caller(settings: Settings, request: Request) -> str:
    """The owner id of the caller (`anonymous` when auth is off)."""
    key = caller_key(settings, services().keyring, request)
    return key.owner if key is not None else ANONYMOUS


def require_admin(settings: Settings, request: Request) -> None:
    """Operator routes: open when auth is off; otherwise the admin token (Bearer or X-Admin-Token)."""
    if not settings.auth_enabled and not settings.admin_token:
        return
    token = request.headers.get("X-Admin-Token", "").strip() or _presented_key(request)
    if settings.admin_token and token and hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        return
    raise NanoeditError("this route needs the admin token", code="forbidden" if token else "unauthorized",
                        suggestion="Send 'Authorization: Bearer <NANOEDIT_ADMIN_TOKEN>'.")
