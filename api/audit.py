"""The audit log over HTTP: `audit(...)`, which the operator routes call after an action succeeded, and
`GET /v1/monitoring/audit?limit=&since=` (operator only). The entries and their key belong to monitoring/audit.py.

Who acted: the admin token cannot name a person, so the operator says who they are in the `X-Operator` header
(or the body's `by` / `created_by` / `resolved_by` field of the route); without either, "admin". `credential`
records what authorized the call: `admin_token`, or `auth_off` when the deployment runs without auth.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from api.auth import require_admin
from api.services import services
from monitoring.audit import AuditEntry, AuditLog
from shared.errors import ClientInputError

bp = Blueprint("audit", __name__)
ACTOR_MAX = 100
_ACTOR = re.compile(r"[^\x00-\x1f\x7f]{1,100}")


def actor(given: Any = None) -> str:
    """Who acts: the X-Operator header, else `given` (a body field), else "admin"; bounded, no control chars."""
    for raw in (request.headers.get("X-Operator"), given):
        if isinstance(raw, str) and raw.strip() and _ACTOR.fullmatch(raw.strip()[:ACTOR_MAX]):
            return raw.strip()[:ACTOR_MAX]
    return "admin"


def audit(action: str, *, target: str = "", before: dict[str, Any] | None = None,
          after: dict[str, Any] | None = None, details: dict[str, Any] | None = None,
          given_actor: Any = None) -> AuditEntry | None:
    svc = services()
    s = svc.settings
    credential = "admin_token" if (s.auth_enabled or s.admin_token) else "auth_off"
    return AuditLog(svc.redis, s.redis_prefix, svc.clock).record(
        action, actor=actor(given_actor), credential=credential, target=target, before=before, after=after,
        details=details, request_id=str(g.get("request_id", "")))


def _limit() -> int:
    raw = request.args.get("limit", "100")
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= 1000:
        raise ClientInputError(f"limit={raw[:20]!r}", code="invalid_request", suggestion="limit is 1..1000.")
    return int(raw)


def _since() -> float | None:
    raw = request.args.get("since")
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw) if len(raw) <= 64 else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ClientInputError(f"since={raw[:40]!r}", code="invalid_request",
                               suggestion="since is an RFC 3339 time with a zone, e.g. 2030-01-01T12:00:00Z.")
    try:
        return parsed.timestamp()
    except (OverflowError, OSError):  # year 1 or 9999 shifted past the range by its zone
        raise ClientInputError(f"since={raw[:40]!r}", code="invalid_request",
                               suggestion="since is an RFC 3339 time between years 1 and 9999.") from None


@bp.get("/v1/monitoring/audit")
def list_audit() -> Response:
    """Operator actions, newest first: ?limit=1..1000 (100) &since=RFC 3339."""
    svc = services()
    require_admin(svc.settings, request)
    limit, since = _limit(), _since()
    entries = AuditLog(svc.redis, svc.settings.redis_prefix, svc.clock).entries(limit, since)
    return jsonify({"entries": [e.public() for e in entries], "limit": limit})
