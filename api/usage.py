"""GET /v1/usage?period=day|month: the caller's provider calls, tokens and estimated cost (UTC days).

Callers see their own totals. Operators (the admin token) see every key's totals, one row per owner id.
Counters are written by the generate worker per answered provider call (`shared.usage_ledger`); the cost is
estimated from the model catalogue's prices (GET /v1/models), so it is always marked as an estimate.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.auth import caller, require_admin
from api.services import services
from shared.errors import ClientInputError, NanoeditError
from shared.usage_ledger import UsageLedger, days_of

bp = Blueprint("usage", __name__)
PERIODS = ("day", "month")


def _is_operator() -> bool:
    """True when the request carries the admin token (only then; an open deployment has no operators)."""
    s = services().settings
    if not s.admin_token:
        return False
    try:
        require_admin(s, request)
    except NanoeditError:
        return False
    return True


@bp.get("/v1/usage")
def usage() -> Response:
    svc = services()
    period = request.args.get("period", "day")
    if period not in PERIODS:
        raise ClientInputError(f"period={period[:20]!r}", code="invalid_request",
                               suggestion="Use period=day (today, UTC) or period=month (this month so far).")
    ledger = UsageLedger(svc.redis, svc.settings.redis_prefix, svc.clock)
    days = days_of(period, ledger.today())
    body: dict[str, object] = {"period": period, "from": days[0].isoformat(), "to": days[-1].isoformat(),
                               "cost_is_estimate": True}
    if _is_operator():
        body["keys"] = [{"owner": owner, **ledger.totals(owner, days).to_dict()} for owner in ledger.owners(days)]
        return jsonify(body)
    owner = caller(svc.settings, request)
    body.update(owner=owner, **ledger.totals(owner, days).to_dict())
    return jsonify(body)
