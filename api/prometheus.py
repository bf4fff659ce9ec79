"""GET /metrics: Prometheus text for every gunicorn worker of this web instance, plus fleet state from Redis.

The web workers' own samples come from the instance's multiprocess directory (set by deploy/gunicorn.conf.py);
the queue, worker, limiter, circuit, beat and alert gauges are read from Redis here, at scrape time, and only
here. Worker instances serve their own samples on NANOEDIT_METRICS_PORT (workers/metrics_server.py).
Operator route: needs the admin token when auth is on (Prometheus: `authorization` in the scrape config).
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from api.auth import require_admin
from api.services import services
from monitoring.exposition import registry, render
from monitoring.state_collector import RedisStateCollector

bp = Blueprint("prometheus", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    svc = services()
    require_admin(svc.settings, request)
    state = RedisStateCollector(r=svc.redis, keys=svc.keys, clock=svc.clock, limiter=svc.limiter,
                                breaker=svc.breaker, queue_depths=getattr(svc.enqueuer, "queue_depths", None),
                                worker_heartbeat_s=svc.settings.worker_heartbeat_s)
    body, content_type = render(registry(state), request.headers.get("Accept", ""))
    return Response(body, content_type=content_type)
