"""Routes under /v1/monitoring: the beat health report (latest, history, daily summary, weekly and monthly
reviews from monitoring/periodic.py) and the dashboard's
chart series built from it (monitoring/series.py).

Operator routes: they need the admin token when auth is on.
"""

from __future__ import annotations

import re
from datetime import datetime

from flask import Blueprint, Response, jsonify, request

from api.auth import require_admin
from api.services import services
from monitoring.periodic import PERIOD_KINDS, Period, PeriodError, ReviewBuilder
from monitoring.report import HealthReporter
from monitoring.series import RANGES, chart_series
from shared.errors import ClientInputError, NotFound

bp = Blueprint("monitoring", __name__)


def reporter() -> HealthReporter:
    svc = services()
    s = svc.settings
    return HealthReporter(r=svc.redis, prefix=s.redis_prefix, clock=svc.clock, jobs=svc.store,
                          liveness=svc.liveness(),
                          recorder=svc.recorder, limiter=svc.limiter, breaker=svc.breaker,
                          queue_depths=lambda: svc.enqueuer.queue_depths(), interval_s=s.report_interval_s,
                          min_samples=s.report_min_samples)


@bp.get("/v1/monitoring/report")
def report() -> Response:
    """?period=latest (default) | daily [&day=YYYY-MM-DD] | history [&since_s=3600]
    | weekly [&period_id=YYYY-Www] | monthly [&period_id=YYYY-MM] (default: the current week or month so far)."""
    svc = services()
    require_admin(svc.settings, request)
    period = request.args.get("period", "latest")
    # Every parameter is checked when given, whether or not this period uses it: nothing invalid is ignored.
    day = request.args.get("day")
    if day is not None and not _is_date(day):  # 2024-13-45 matches the pattern but is no date: 400, not 500
        raise ClientInputError(f"day={day[:20]!r}", code="invalid_request", suggestion="Use YYYY-MM-DD (UTC).")
    raw_since = request.args.get("since_s", "3600")
    if not re.fullmatch(r"[0-9]{1,6}", raw_since) or int(raw_since) > 86400:
        raise ClientInputError(f"since_s={raw_since[:20]!r}", code="invalid_request",
                               suggestion="since_s is a whole number of seconds from 0 to 86400.")
    review_period = _review_period(period, request.args.get("period_id"))
    rep = reporter()
    if period in PERIOD_KINDS:
        builder = ReviewBuilder(rep, svc.clock)
        return jsonify(builder.build(review_period or builder.current(period)))
    if period == "latest":
        latest = rep.latest()
        if latest is None:
            raise NotFound("no health report yet", suggestion="Beat writes one every NANOEDIT_REPORT_INTERVAL_S; "
                                                              "check that the beat process runs.")
        return jsonify(latest)
    if period == "daily":
        return jsonify(rep.daily(day))
    if period == "history":
        return jsonify({"reports": rep.history(since_s=int(raw_since))})
    raise ClientInputError(f"period={period[:20]!r}", code="invalid_request",
                           suggestion="Use period=latest, daily, history, weekly or monthly.")


def _review_period(period: str, period_id: str | None) -> Period | None:
    """The review period `period_id` names (None: not given); 400 for an id that names none or a wrong period."""
    if period_id is None:
        return None
    if period not in PERIOD_KINDS:
        raise ClientInputError(f"period_id with period={period[:20]!r}", code="invalid_request",
                               suggestion="period_id goes with period=weekly (YYYY-Www) or monthly (YYYY-MM).")
    try:
        return Period.parse(period, period_id)
    except PeriodError:
        raise ClientInputError(f"period_id={period_id[:20]!r}", code="invalid_request",
                               suggestion="Use YYYY-Www (ISO week, e.g. 2026-W05) for weekly, "
                                          "YYYY-MM for monthly.") from None


def _is_date(day: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        return False
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        return False
    return True


@bp.get("/v1/monitoring/series")
def series() -> Response:
    """?range=1h (default) | 24h: the dashboard's chart points, built from the stored reports (bounded)."""
    svc = services()
    require_admin(svc.settings, request)
    name = request.args.get("range", "1h")
    chart_range = RANGES.get(name)
    if chart_range is None:
        raise ClientInputError(f"range={name[:20]!r}", code="invalid_request",
                               suggestion="Use range=" + " or ".join(RANGES) + ".")
    return jsonify(chart_series(reporter(), chart_range).as_json())
