"""Alerts raised and resolved by hand: `POST /v1/monitoring/alerts` (a custom alert) and
`POST /v1/monitoring/alerts/{id}/resolve` (any firing alert, with `resolved_by`). Operator routes.

Both write a request for the engine (monitoring/alerts/manual.py owns the keys and the rules) and then run one
evaluation at once on the latest health report, the data beat's last evaluation saw, so the custom alert's
firing message (or the resolved one) goes out now rather than at the next beat. When another evaluation holds
the lock, or no report younger than three report intervals exists, the request is applied by the next beat
evaluation (NANOEDIT_REPORT_INTERVAL_S); the answer's `state` says which happened. Every call is audited.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, jsonify

from api.alerts import _body, _stores, firing_alert
from api.audit import ACTOR_MAX, actor, audit
from api.monitoring import reporter
from api.services import services
from monitoring.alerts import build_engine
from monitoring.alerts.manual import (
    CUSTOM_GROUP,
    CUSTOM_MAX,
    MESSAGE_MAX,
    METADATA_KEY_MAX,
    METADATA_MAX_KEYS,
    METADATA_VALUE_MAX,
    ManualAlerts,
)
from monitoring.alerts.model import AlertState
from monitoring.alerts.rules import SEVERITIES
from monitoring.alerts.store import AlertStore
from shared.errors import ClientInputError, Conflict

bp = Blueprint("alerts_manual", __name__)
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_CUSTOM_FIELDS = frozenset({"severity", "message", "metadata", "group", "created_by"})
_RESOLVE_FIELDS = frozenset({"resolved_by", "comment"})
COMMENT_MAX = 500
FRESH_INTERVALS = 3


def _invalid(what: str, suggestion: str) -> ClientInputError:
    return ClientInputError(what, code="invalid_request", suggestion=suggestion)


def _fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _invalid(f"unknown field(s) {', '.join(unknown)[:200]}",
                       f"Send only {', '.join(sorted(allowed))}.")


def _text(body: dict[str, Any], key: str, limit: int, *, required: bool = False) -> str:
    if key not in body and not required:
        return ""
    raw = body.get(key)  # a null is refused like any other non-string: it would silently mean "absent"
    if not isinstance(raw, str) or not raw.strip() or len(raw) > limit:
        raise _invalid(f"{key} must be a non-empty string of at most {limit} characters",
                       f"Send {key} as text, 1..{limit} characters.")
    return raw.strip()


def _metadata(body: dict[str, Any]) -> dict[str, str]:
    raw = body.get("metadata", {})
    hint = (f"metadata is a flat object of at most {METADATA_MAX_KEYS} string values (keys: letters, digits, "
            f"_ . -, at most {METADATA_KEY_MAX}; values at most {METADATA_VALUE_MAX} characters).")
    if not isinstance(raw, dict) or len(raw) > METADATA_MAX_KEYS:
        raise _invalid("metadata must be an object of at most 20 entries", hint)
    for k, v in raw.items():
        if not _NAME.fullmatch(k) or not isinstance(v, str) or len(v) > METADATA_VALUE_MAX:
            raise _invalid(f"metadata entry {str(k)[:64]!r} is not a short name with a short string value", hint)
    return dict(raw)


def _evaluate_now() -> None:
    """One evaluation on the latest report (see the module docstring); skipped when there is none, or when it is
    older than FRESH_INTERVALS report intervals (beat is late or down: old data must not move rule alerts)."""
    svc = services()
    latest = reporter().latest()
    if latest is None:
        return
    age = svc.clock.now() - float(latest.get("generated_at_ts") or 0)
    if age <= FRESH_INTERVALS * svc.settings.report_interval_s:
        build_engine(svc.settings, svc.redis, svc.clock).evaluate(latest)


def _view(alerts: AlertStore, alert_id: str, fallback: dict[str, Any]) -> dict[str, Any]:
    st = alerts.get(alert_id)
    return st.public() if st is not None else fallback


@bp.post("/v1/monitoring/alerts")
def create_alert() -> Response:
    """A custom alert: {severity, message, metadata?, group?, created_by?}; fires at once (201)."""
    alerts, _ = _stores()
    svc = services()
    body = _body()
    _fields(body, _CUSTOM_FIELDS)
    severity = body.get("severity")
    if severity not in SEVERITIES:
        raise _invalid(f"severity must be one of {', '.join(SEVERITIES)}",
                       "critical pages at once; low waits for business hours where quiet hours are set.")
    message = _text(body, "message", MESSAGE_MAX, required=True)
    group = _text(body, "group", 64) or CUSTOM_GROUP
    if not _NAME.fullmatch(group):
        raise _invalid("group may use only letters, digits, '_', '-' and '.' (at most 64)",
                       f"Leave group out for {CUSTOM_GROUP!r}, or name an incident group, e.g. \"job_errors\".")
    metadata = _metadata(body)
    who = actor(_text(body, "created_by", ACTOR_MAX))
    manual = ManualAlerts(svc.redis, svc.settings.redis_prefix, svc.clock)
    if manual.count() >= CUSTOM_MAX:
        raise Conflict(f"{CUSTOM_MAX} custom alerts are open already", message="Too many custom alerts are open.",
                       suggestion="Resolve some (POST /v1/monitoring/alerts/{id}/resolve) before raising more.")
    custom = manual.create(severity=str(severity), message=message, group=group, created_by=who,
                           metadata=metadata)
    audit("alert.create", target=custom.id, after={"severity": custom.severity, "group": custom.group,
                                                   "message": custom.message}, given_actor=who)
    _evaluate_now()
    fallback = AlertState(custom.id, custom.id, custom.group, custom.severity, labels=dict(metadata),
                          summary=message).public()
    resp = jsonify({**_view(alerts, custom.id, fallback), "metadata": metadata, "created_by": who})
    resp.status_code = 201
    resp.headers["Location"] = f"/v1/monitoring/alerts?state=all&alert={custom.id}"
    return resp


@bp.post("/v1/monitoring/alerts/<alert_id>/resolve")
def resolve_alert(alert_id: str) -> Response:
    """Resolve a firing alert by hand: {resolved_by, comment?}. A rule alert stays resolved until its condition
    has cleared once (monitoring/alerts/manual.py)."""
    alerts, _ = _stores()
    svc = services()
    body = _body()
    _fields(body, _RESOLVE_FIELDS)
    by = _text(body, "resolved_by", ACTOR_MAX, required=True)
    comment = _text(body, "comment", COMMENT_MAX)
    st = firing_alert(alerts, alert_id, message="Only a firing alert can be resolved.",
                      suggestion="A pending alert clears by itself; a resolved one is done.")
    ManualAlerts(svc.redis, svc.settings.redis_prefix, svc.clock).request_resolve(st, by=by, comment=comment)
    alerts.append_history([alerts.event("resolve_requested", st, by=by, comment=comment)])
    audit("alert.resolve", target=st.id, before={"state": st.state, "episode": st.episode},
          after={"state": "resolved"}, details={"comment": comment} if comment else None, given_actor=by)
    _evaluate_now()
    return jsonify(_view(alerts, st.id, st.public()))
