"""The HTTP API (Flask app factory). Thin: validate, store inputs, write the job record, enqueue by name.

Imports nothing from `workers` (docs/architecture.md, "Layers and ownership"): no Pillow-heavy preprocessing,
no google-genai in the web process.
"""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, g, request

from api import hygiene
from api.errors import register_error_handlers
from api.keylimits import install_rate_headers
from api.waiting import max_waiters
from monitoring import metrics
from monitoring.runtime import build_runtime
from shared.blobs import BlobStore
from shared.clock import Clock
from shared.logging_setup import log_context
from shared.queueing import Enqueuer
from shared.settings import Settings

log = logging.getLogger("nanoedit.api")


def create_app(settings: Settings, *, clock: Clock | None = None, redis_conn: redis.Redis | None = None,
               blobs: BlobStore | None = None, enqueuer: Enqueuer | None = None) -> Flask:
    app = Flask("nanoedit", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_form_field_bytes  # one multipart text field
    app.config["MAX_FORM_PARTS"] = settings.max_form_parts
    app.json.sort_keys = False  # type: ignore[attr-defined]
    runtime = build_runtime(settings, clock=clock, redis_conn=redis_conn, blobs=blobs, enqueuer=enqueuer)
    app.extensions["nanoedit"] = runtime
    runtime.store.events.max_waiters = max_waiters(settings)  # `Prefer: wait` and event streams (api/waiting.py)
    mono = runtime.clock.monotonic

    from api.admin import bp as admin_bp
    from api.admin_pools import bp as admin_pools_bp
    from api.alerts import bp as alerts_bp
    from api.alerts_manual import bp as alerts_manual_bp
    from api.audit import bp as audit_bp
    from api.events import bp as events_bp
    from api.health import bp as health_bp
    from api.jobs import bp as jobs_bp
    from api.meta import bp as meta_bp
    from api.models import bp as models_bp
    from api.monitoring import bp as monitoring_bp
    from api.prometheus import bp as metrics_bp
    from api.usage import bp as usage_bp
    from api.web import bp as web_bp
    from api.webhooks import bp as webhooks_bp

    app.register_blueprint(jobs_bp)
    app.register_blueprint(events_bp)  # GET /v1/jobs/{id}/events (Server-Sent Events)
    app.register_blueprint(health_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(admin_pools_bp)  # /v1/admin/workers: worker pools, resize
    app.register_blueprint(monitoring_bp)
    app.register_blueprint(alerts_bp)
    app.register_blueprint(alerts_manual_bp)  # custom alerts, resolve by hand
    app.register_blueprint(audit_bp)  # GET /v1/monitoring/audit (operator actions)
    app.register_blueprint(meta_bp)
    app.register_blueprint(models_bp)  # GET /v1/models (the model catalogue)
    app.register_blueprint(usage_bp)  # GET /v1/usage (tokens and estimated cost per day/month)
    app.register_blueprint(web_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(webhooks_bp)
    register_error_handlers(app)
    install_rate_headers(app)  # RateLimit-* on every /v1 response to a keyed caller (api/keylimits.py)

    hosts = hygiene.allowed_hosts(settings)

    @app.before_request
    def _start() -> None:
        g.request_id = hygiene.request_id(request.headers.get("X-Request-ID"))
        g.started = mono()
        g.log_ctx = log_context(request_id=g.request_id)
        g.log_ctx.__enter__()
        metrics.HTTP_IN_FLIGHT.inc()
        g.in_flight = True
        hygiene.check_host(request, hosts)  # 421: DNS rebinding (api/hygiene.py)
        hygiene.check_origin(request, settings)  # 403: cross-site writes while auth is off

    @app.after_request
    def _finish(resp: Response) -> Response:
        resp.headers["X-Request-ID"] = g.get("request_id", "")
        rule = request.url_rule  # the route template, never the raw path (cardinality)
        # Time spent waiting on the client's own `Prefer: wait` is not service latency (api/waiting.py).
        metrics.observe_http(rule.rule if rule is not None else None, request.method, resp.status_code,
                             mono() - g.get("started", mono()) - g.get("waited_s", 0.0))
        if request.path.startswith("/v1/") or request.path in ("/readyz",):
            log.info("request", extra={"method": request.method, "path": request.path,
                                       "status": resp.status_code,
                                       "duration_ms": round((mono() - g.get("started", 0)) * 1000,
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
    if hygiene.insecure_bind(settings):
        log.critical("INSECURE: auth is off and NANOEDIT_HOST=%s listens beyond loopback "
                     "(NANOEDIT_ALLOW_INSECURE=1): anyone who can reach it can use the service", settings.host)
    return app
