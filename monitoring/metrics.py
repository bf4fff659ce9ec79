"""Every Prometheus metric nanoedit exposes: the objects each process records into, and the catalogue.

Recorded in the process that does the work (HTTP in the web workers, provider calls in generate children, the
terminal write's samples wherever it happens) into that process tree's multiprocess directory
(monitoring/multiproc.py: import this module only after it ran, which the entry points guarantee). Redis-derived
gauges (queues, workers, limiter, circuit, beat, alerts) are not objects here: monitoring/state_collector.py
computes them at scrape time in the API only, so they are never multiplied per process. Their names are in
STATE_METRICS so the dashboard and rule tests can check every name against one list.

Buckets cover 0.05 s … 300 s (docs/architecture.md, "Monitoring data"; prometheus-client's default stops at
10 s, and provider calls take up to NANOEDIT_GEMINI_TIMEOUT_S). HTTP latency adds three finer buckets below: API
calls take milliseconds.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from monitoring.system_metrics import SYSTEM_METRICS
from shared.errors import Blame, blame_of
from shared.jobs.model import Job, JobStage, JobStatus

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, *DURATION_BUCKETS)
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

# -- web -----------------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter("nanoedit_http_requests", "HTTP requests by route template, method and status.",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram("nanoedit_http_request_duration_seconds", "HTTP request duration by route template.",
                          ["route", "method"], buckets=HTTP_BUCKETS)
HTTP_IN_FLIGHT = Gauge("nanoedit_http_requests_in_flight", "HTTP requests being served now.",
                       multiprocess_mode="livesum")
JOBS_SUBMITTED = Counter("nanoedit_jobs_submitted", "Jobs accepted by POST /v1/jobs (replays not counted).",
                         ["operation"])

# -- the terminal write (workers, sometimes the API) ---------------------------------------------------
JOBS_FINISHED = Counter("nanoedit_jobs_finished", "Jobs that reached a terminal status; blame (service, caller, "
                        "canceled, none) is whose failure it is (shared/errors.py): error rates count service only.",
                        ["status", "operation", "error_code", "blame"])
JOB_DURATION = Histogram("nanoedit_job_duration_seconds", "End-to-end job duration, created to finished.",
                         ["status", "operation"], buckets=DURATION_BUCKETS)
JOB_STAGE_DURATION = Histogram("nanoedit_job_stage_duration_seconds",
                               "Time per stage of finished jobs: queued (wait before preprocessing), "
                               "preprocess, generate.", ["stage"], buckets=DURATION_BUCKETS)

# -- generate workers ----------------------------------------------------------------------------------
PROVIDER_CALL_DURATION = Histogram("nanoedit_provider_call_duration_seconds",
                                   "Provider call duration by outcome (succeeded or the error table's outcome).",
                                   ["outcome"], buckets=DURATION_BUCKETS)
PROVIDER_RETRIES = Counter("nanoedit_provider_retries", "Provider failures that scheduled another attempt.",
                           ["outcome"])
PROVIDER_RATE_LIMITED = Counter("nanoedit_provider_rate_limited",
                                "Provider 429 answers (each pauses the whole fleet).", ["outcome"])
LIMITER_WAIT = Histogram("nanoedit_limiter_wait_seconds",
                         "Time a generate task waited for fleet limiter admission; result granted or requeued.",
                         ["result"], buckets=DURATION_BUCKETS)
GENERATE_REQUEUES = Counter("nanoedit_generate_requeues",
                            "Generate tasks sent back to the queue to wait (no retry burned), by reason.",
                            ["reason"])
PROVIDER_TOKENS = Counter("nanoedit_provider_tokens", "Tokens the provider reported, by model and kind (prompt, "
                          "prompt_image, output, output_image, thinking).", ["model", "kind"])
PROVIDER_COST_USD = Counter("nanoedit_cost_usd", "Estimated provider cost in USD (catalogue prices), by model.",
                            ["model"])
TASKS_IN_PROGRESS = Gauge("nanoedit_tasks_in_progress", "Celery tasks executing now, by task name.", ["task"],
                          multiprocess_mode="livesum")

# name -> (type, help) of the gauges computed at scrape time from Redis (monitoring/state_collector.py).
STATE_METRICS: dict[str, tuple[str, str]] = {
    "nanoedit_redis_up": ("gauge", "1 if the API could read Redis during this scrape."),
    "nanoedit_queue_depth": ("gauge", "Work waiting for the queue: broker messages plus the per-key "
                                       "fair lines in front of it."),
    "nanoedit_queue_waiting_jobs": ("gauge", "Jobs waiting for a stage, per queue."),
    "nanoedit_queue_oldest_age_seconds": ("gauge", "Age of the oldest job waiting in the queue (0 when empty)."),
    "nanoedit_workers_live": ("gauge", "Worker instances with a fresh heartbeat, per queue."),
    "nanoedit_limiter_in_flight": ("gauge", "Provider calls holding a fleet limiter lease."),
    "nanoedit_limiter_concurrency_limit": ("gauge", "Fleet cap on provider calls in flight."),
    "nanoedit_limiter_cooldown_remaining_seconds": ("gauge", "Remaining fleet pause after a 429."),
    "nanoedit_circuit_state": ("gauge", "1 for the provider circuit breaker's current state."),
    "nanoedit_circuit_consecutive_failures": ("gauge", "Consecutive transient provider failures."),
    "nanoedit_beat_heartbeat_age_seconds": ("gauge", "Seconds since beat's last heartbeat (absent: never)."),
    "nanoedit_alerts_firing": ("gauge", "Alerts of the built-in alert engine firing now, by severity."),
    "nanoedit_alert_evaluation_age_seconds": ("gauge", "Seconds since the built-in alert engine last evaluated."),
}
CIRCUIT_STATES = ("closed", "open", "half_open")
SEVERITIES = ("critical", "high", "medium", "low")  # monitoring/alerts/rules.py (no "warning": docs/alerts.md#rules)

PROCESS_METRICS = (HTTP_REQUESTS, HTTP_DURATION, HTTP_IN_FLIGHT, JOBS_SUBMITTED, JOBS_FINISHED, JOB_DURATION,
                   JOB_STAGE_DURATION, PROVIDER_CALL_DURATION, PROVIDER_RETRIES, PROVIDER_RATE_LIMITED,
                   LIMITER_WAIT, GENERATE_REQUEUES, TASKS_IN_PROGRESS, PROVIDER_TOKENS, PROVIDER_COST_USD)


def metric_names() -> dict[str, str]:
    """Every family name exposed (counters with their `_total`) → type, for dashboards and rule checks."""
    names: dict[str, str] = {}
    for m in PROCESS_METRICS:
        kind = str(getattr(m, "_type", "untyped"))
        name = str(getattr(m, "_name", ""))
        names[f"{name}_total" if kind == "counter" else name] = kind
    names.update({name: kind for name, (kind, _) in STATE_METRICS.items()})
    names.update(dict.fromkeys(SYSTEM_METRICS, "gauge"))  # process trees and Redis (monitoring/system_metrics.py)
    return names


# -- recording helpers (one place decides the labels) -------------------------------------------------------
def observe_http(route: str | None, method: str, status: int, duration_s: float) -> None:
    route = route or "unmatched"  # 404s: never the raw path (unbounded cardinality)
    method = method if method in HTTP_METHODS else "other"
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_DURATION.labels(route, method).observe(max(0.0, duration_s))


def _blame(job: Job) -> str:
    """The `blame` label: a failed job's class by its code (as monitoring/outcomes.py counts it), else none."""
    if job.status == JobStatus.CANCELED:
        return Blame.CANCELED
    if job.status == JobStatus.FAILED:
        return blame_of(job.error.code if job.error else "internal_error")
    return "none"


def job_finished(job: Job) -> None:
    """Samples of one job's terminal write (called once per job, by the winner of that write)."""
    error_code = job.error.code if job.error else "none"
    JOBS_FINISHED.labels(job.status, job.operation, error_code, _blame(job)).inc()
    if job.finished_at is not None:
        JOB_DURATION.labels(job.status, job.operation).observe(max(0.0, job.finished_at - job.created_at))
    for stage, start, end in ((JobStage.QUEUED.value, job.created_at, job.started_at),
                              ("preprocess", job.preprocess_started_at, job.preprocess_done_at),
                              ("generate", job.preprocess_done_at, job.generate_done_at)):
        if start is not None and end is not None:
            JOB_STAGE_DURATION.labels(stage).observe(max(0.0, end - start))
