"""The HTTP API (Flask app factory). Thin: validate, store inputs, write the job record, enqueue by name.

Imports nothing from `workers` (design §2): no Pillow-heavy preprocessing, no google-genai in the web process.
"""

from __future__ import annotations

import logging
import time
import uuid

import redis
from flask import Flask, Response, g, request

from api.errors import register_error_handlers
from api.services import Services
from monitoring import metrics
from monitoring.hooks import install_terminal_hook
from monitoring.outcomes import OutcomeRecorder
from shared.blobs import BlobStore, FilesystemBlobStore
from shared.circuit import CircuitBreaker
from shared.clock import Clock, SystemClock
from shared.jobs.store import JobStore
from shared.limiter import FleetLimiter
from shared.logging_setup import log_context
from shared.queueing import Enqueuer, make_celery
from shared.redis_conn import Keys, redis_client
from shared.settings import Settings

log = logging.getLogger("nanoedit.api")


def create_app(settings: Settings, *, clock: Clock | None = None, redis_conn: redis.Redis | None = None,
               blobs: BlobStore | None = None, enqueuer: Enqueuer | None = None) -> Flask:
    app = Flask("nanoedit", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    clock = clock or SystemClock()
    r = redis_conn or redis_client(settings)
    keys = Keys(settings.redis_prefix)
    enq = enqueuer or Enqueuer(make_celery(settings))
    store = JobStore(r, keys, clock)
    recorder = OutcomeRecorder(r, settings.redis_prefix, clock)
    # Stub enqueuers in tests may not deliver webhooks.
    install_terminal_hook(store, recorder, getattr(enq, "webhook", None))
    app.extensions["nanoedit"] = Services(
        settings=settings, redis=r, keys=keys, store=store,
        blobs=blobs or FilesystemBlobStore(settings.blob_dir), enqueuer=enq, clock=clock,
        limiter=FleetLimiter(r, settings.redis_prefix, settings.limit_config()),
        breaker=CircuitBreaker(r, settings.redis_prefix, settings.circuit_config(), clock))

    from api.admin import bp as admin_bp
    from api.alerts import bp as alerts_bp
    from api.health import bp as health_bp
    from api.jobs import bp as jobs_bp
    from api.meta import bp as meta_bp
    from api.monitoring import bp as monitoring_bp
    from api.prometheus import bp as metrics_bp
    from api.web import bp as web_bp

    app.register_blueprint(jobs_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(monitoring_bp)
    app.register_blueprint(alerts_bp)
    app.register_blueprint(meta_bp)
    app.register_blueprint(web_bp)
    app.register_blueprint(metrics_bp)
    register_error_handlers(app)

    @app.before_request
    def _start() -> None:
        g.request_id = (request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex)
        g.started = time.perf_counter()
        g.log_ctx = log_context(request_id=g.request_id)
        g.log_ctx.__enter__()
        metrics.HTTP_IN_FLIGHT.inc()
        g.in_flight = True

    @app.after_request
    def _finish(resp: Response) -> Response:
        resp.headers["X-Request-ID"] = g.get("request_id", "")
        rule = request.url_rule  # the route template, never the raw path (cardinality)
        metrics.observe_http(rule.rule if rule is not None else None, request.method, resp.status_code,
                             time.perf_counter() - g.get("started", time.perf_counter()))
        if request.path.startswith("/v1/") or request.path in ("/readyz",):
            log.info("request", extra={"method": request.method, "path": request.path,
                                       "status": resp.status_code,
                                       "duration_ms": round((time.perf_counter() - g.get("started", 0)) * 1000,
                                                            1)})
        return resp

    @app.teardown_request
    def _teardown(_: BaseException | None) -> None:
        ctx = g.pop("log_ctx", None)
        if ctx is not None:
            ctx.__exit__(None, None, None)
        if g.pop("in_flight", False):
            metrics.HTTP_IN_FLIGHT.dec()

    if not settings.auth_enabled:
        log.warning("AUTH IS OFF: NANOEDIT_API_KEYS is unset, every caller is 'anonymous' (development mode)")
    return app
