"""Routes of the alert engine under /v1/monitoring: alerts (firing, history, ack, a test notification) and
silences (create, list, read, change, delete).

Operator routes: they need the admin token when auth is on. Registering this blueprint also loads the alert
rules and builds the channels once, so a bad NANOEDIT_ALERT_RULES file fails API start-up loudly.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.blueprints import BlueprintSetupState

from api.audit import audit
from api.auth import require_admin
from api.bodies import OPERATOR_JSON_BYTES, read_json_object
from api.services import services
from monitoring.alerts import build_engine, check_config
from monitoring.alerts.model import FIRING, INACTIVE, PENDING, AlertState
from monitoring.alerts.silences import (
    MATCHER_KEYS,
    MAX_DURATION_S,
    MAX_TIME_S,
    MIN_TIME_S,
    Silence,
    SilenceError,
    SilenceStore,
    first_match,
)
from monitoring.alerts.store import AlertStore
from shared.clock import rfc3339
from shared.errors import ClientInputError, Conflict, NotFound

bp = Blueprint("alerts", __name__)
STATES = ("firing", "pending", "all", "history")


@bp.record_once
def _check_config(state: BlueprintSetupState) -> None:
    check_config(state.app.extensions["nanoedit"].settings)


def _stores() -> tuple[AlertStore, SilenceStore]:
    svc = services()
    require_admin(svc.settings, request)
    return (AlertStore(svc.redis, svc.settings.redis_prefix, svc.clock),
            SilenceStore(svc.redis, svc.settings.redis_prefix, svc.clock))


def _body() -> dict[str, Any]:
    """The JSON object body (empty body = {}), bounded: size, depth, no NaN/Infinity (api/bodies.py)."""
    return read_json_object(request, max_bytes=OPERATOR_JSON_BYTES, max_depth=services().settings.max_json_depth,
                            empty_ok=True)


_SILENCE_FIELDS = frozenset({"matchers", "comment", "created_by", "starts_at", "ends_at", "duration_s"})


def _silence_body(allowed: frozenset[str] = _SILENCE_FIELDS) -> dict[str, Any]:
    """A silence request body: only known fields, none of them null (a null would silently mean "absent")."""
    body = _body()
    unknown = sorted(set(body) - allowed)
    nulls = sorted(k for k, v in body.items() if v is None)
    if unknown or nulls:
        raise ClientInputError(f"unknown field(s) {unknown}" if unknown else f"null field(s) {nulls}",
                               code="invalid_request",
                               suggestion=f"Send only {', '.join(sorted(allowed))}, each with a value; leave out "
                                          "what you do not set.")
    wrong = sorted(k for k in ("comment", "created_by", "starts_at", "ends_at")
                   if k in body and not isinstance(body[k], str))
    if wrong:
        raise ClientInputError(f"{', '.join(wrong)} must be string(s)", code="invalid_request",
                               suggestion="comment and created_by are text; times are RFC 3339 strings.")
    return body


def _limit() -> int:
    raw = request.args.get("limit", "100")
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= 1000:
        raise ClientInputError(f"limit={raw[:20]!r}", code="invalid_request", suggestion="limit is 1..1000.")
    return int(raw)


@bp.get("/v1/monitoring/alerts")
def list_alerts() -> Response:
    """?state=firing (default) | pending | all | history [&limit=100] [&alert=ID]."""
    alerts, silences = _stores()
    now = services().clock.now()
    state = request.args.get("state", "firing")
    if state not in STATES:
        raise ClientInputError(f"state={state[:20]!r}", code="invalid_request",
                               suggestion=f"Use state={', '.join(STATES)}.")
    last = alerts.last_evaluated_at()
    meta = {"state": state, "evaluated_at": rfc3339(last),
            "evaluation_age_s": None if last is None else round(now - last, 1)}
    if state == "history":
        return jsonify({**meta, "events": alerts.history(_limit(), request.args.get("alert") or None)})
    wanted = {"firing": (FIRING,), "pending": (PENDING,)}.get(state)
    active = silences.active()
    acks = alerts.acks()
    rows = []
    for st in sorted(alerts.states().values(), key=lambda s: s.id):
        if (wanted and st.state not in wanted) or (not wanted and st.state == INACTIVE):
            continue
        ack = acks.get(st.id)
        silence = first_match(active, st)
        rows.append(st.public(acked=ack if ack and ack.get("episode") == st.episode else None,
                              silenced_by=silence.id if silence else None))
    return jsonify({**meta, "alerts": rows[:_limit()]})


def firing_alert(alerts: AlertStore, alert_id: str, *, message: str, suggestion: str) -> AlertState:
    """The alert `alert_id` if it is firing: 404 when unknown, 409 (`message`, `suggestion`) in another state."""
    st = alerts.get(alert_id)
    if st is None:
        raise NotFound(f"no alert {alert_id[:100]!r}", suggestion="GET /v1/monitoring/alerts?state=all lists them.")
    if st.state != FIRING:
        raise Conflict(f"alert {alert_id[:100]!r} is {st.state}, not firing", message=message, suggestion=suggestion)
    return st


@bp.post("/v1/monitoring/alerts/<alert_id>/ack")
def ack_alert(alert_id: str) -> Response:
    alerts, _ = _stores()
    body = _body()
    st = firing_alert(alerts, alert_id, message="Only a firing alert can be acknowledged.",
                      suggestion="Acknowledge it while it fires; a silence mutes it ahead.")
    by, comment = str(body.get("by") or "operator")[:100], str(body.get("comment") or "")[:500]
    ack = alerts.ack(st, by=by, comment=comment)
    audit("alert.ack", target=st.id, details={"episode": st.episode, "comment": comment}, given_actor=by)
    return jsonify(st.public(acked=ack))


@bp.post("/v1/monitoring/alerts/test")
def test_alert() -> Response:
    """Send a test notification to every configured channel; answers with every delivery attempt."""
    _stores()
    svc = services()
    sent = build_engine(svc.settings, svc.redis, svc.clock).test()
    return jsonify({"notification": sent.to_dict(), "delivered": sent.delivered,
                    "failed": sorted({d.channel for d in sent.deliveries} - set(sent.delivered))})


def _time(body: dict[str, Any], key: str) -> float | None:
    raw = body.get(key)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw) if isinstance(raw, str) and len(raw) <= 64 else None
        stamp = parsed.timestamp() if parsed is not None and parsed.tzinfo is not None else None
    except (ValueError, OverflowError, OSError):  # year 1 or 9999 shifted past the range by its zone
        stamp = None
    if stamp is None or not MIN_TIME_S <= stamp <= MAX_TIME_S:
        raise ClientInputError(f"{key}={str(raw)[:40]!r}", code="invalid_request",
                               suggestion=f"{key} is an RFC 3339 time with a zone between 2000 and 2100, e.g. "
                                          "2030-01-01T12:00:00Z.")
    return stamp


def _window(body: dict[str, Any], current: Silence | None = None) -> dict[str, float]:
    now = services().clock.now()
    starts = _time(body, "starts_at")
    ends = _time(body, "ends_at")
    duration = body.get("duration_s")
    if duration is not None:
        if (isinstance(duration, bool) or not isinstance(duration, int | float)
                or not 0 < duration <= MAX_DURATION_S):  # NaN fails this too; JSON NaN never gets this far
            raise ClientInputError(f"duration_s must be a number of seconds in (0, {int(MAX_DURATION_S)}]",
                                   code="invalid_request",
                                   suggestion=f"e.g. 3600 for one hour; at most {int(MAX_DURATION_S // 86400)} "
                                              "days.")
        if ends is not None:
            raise ClientInputError("give ends_at or duration_s, not both", code="invalid_request",
                                   suggestion="duration_s counts from starts_at (default: now).")
        base = starts if starts is not None else (current.starts_at if current and current.starts_at > now
                                                  else now)
        ends = base + float(duration)
    out: dict[str, float] = {}
    if starts is not None:
        out["starts_at"] = starts
    if ends is not None:
        out["ends_at"] = ends
    return out


def _matchers(body: dict[str, Any]) -> dict[str, str]:
    matchers = body.get("matchers")
    if not isinstance(matchers, dict) or not all(isinstance(v, str) for v in matchers.values()):
        raise ClientInputError("matchers must be an object of patterns", code="invalid_request",
                               suggestion=f"e.g. {{\"group\": \"job_errors\"}}; keys: {', '.join(MATCHER_KEYS)}.")
    return {str(k): str(v) for k, v in matchers.items()}


def _silence_error(exc: SilenceError) -> ClientInputError:
    return ClientInputError(str(exc), code="invalid_request",
                            suggestion="Send matchers, a comment, and ends_at (RFC 3339) or duration_s.")


@bp.get("/v1/monitoring/silences")
def list_silences() -> Response:
    _, silences = _stores()
    now = services().clock.now()
    return jsonify({"silences": [s.public(now) for s in silences.all()]})


@bp.post("/v1/monitoring/silences")
def create_silence() -> Response:
    _, silences = _stores()
    body = _silence_body()
    window = _window(body)
    if "ends_at" not in window:
        raise ClientInputError("a silence needs ends_at or duration_s", code="invalid_request",
                               suggestion="e.g. {\"duration_s\": 3600} for one hour.")
    try:
        s = silences.create(_matchers(body), window["ends_at"], str(body.get("comment") or ""),
                            str(body.get("created_by") or "operator")[:100], starts_at=window.get("starts_at"))
    except SilenceError as exc:
        raise _silence_error(exc) from None
    audit("silence.create", target=s.id, after=s.public(services().clock.now()), given_actor=s.created_by)
    resp = jsonify(s.public(services().clock.now()))
    resp.status_code = 201
    resp.headers["Location"] = f"/v1/monitoring/silences/{s.id}"
    return resp


def _get_silence(silences: SilenceStore, silence_id: str) -> Silence:
    s = silences.get(silence_id)
    if s is None:
        raise NotFound(f"no silence {silence_id[:40]!r}", suggestion="GET /v1/monitoring/silences lists them.")
    return s


@bp.get("/v1/monitoring/silences/<silence_id>")
def get_silence(silence_id: str) -> Response:
    _, silences = _stores()
    return jsonify(_get_silence(silences, silence_id).public(services().clock.now()))


@bp.patch("/v1/monitoring/silences/<silence_id>")
def update_silence(silence_id: str) -> Response:
    """Change ends_at/duration_s (extend or shorten), starts_at, comment or matchers."""
    _, silences = _stores()
    current = _get_silence(silences, silence_id)
    body = _silence_body(_SILENCE_FIELDS - {"created_by"})
    if not body:
        raise ClientInputError("cannot change nothing", code="invalid_request",
                               suggestion="Change any of matchers, comment, starts_at, ends_at, duration_s.")
    changes: dict[str, Any] = dict(_window(body, current))
    if "matchers" in body:
        changes["matchers"] = _matchers(body)
    if "comment" in body:
        changes["comment"] = str(body["comment"] or "")
    try:
        s = silences.update(silence_id, **changes)
    except SilenceError as exc:
        raise _silence_error(exc) from None
    after = (_get_silence(silences, silence_id) if s is None else s).public(services().clock.now())
    audit("silence.update", target=silence_id, before=current.public(services().clock.now()), after=after)
    return jsonify(after)


@bp.delete("/v1/monitoring/silences/<silence_id>")
def delete_silence(silence_id: str) -> Response:
    _, silences = _stores()
    s = _get_silence(silences, silence_id)
    silences.delete(silence_id)
    audit("silence.delete", target=silence_id, before=s.public(services().clock.now()))
    return jsonify({**s.public(services().clock.now()), "deleted": True})
