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
from monitoring.system_metrics import ProcessStats, SystemCollector

bp = Blueprint("prometheus", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    svc = services()
    require_admin(svc.settings, request)
    s = svc.settings
    state = RedisStateCollector(r=svc.redis, prefix=s.redis_prefix, clock=svc.clock, jobs=svc.store,
                                liveness=svc.liveness(),
                                limiter=svc.limiter, breaker=svc.breaker,
                                queue_depths=svc.enqueuer.queue_depths)
    system = SystemCollector(ProcessStats(svc.redis, s.redis_prefix, svc.clock, s.worker_heartbeat_s), svc.redis)
    body, content_type = render(registry(state, system), request.headers.get("Accept", ""))
    return Response(body, content_type=content_type)
