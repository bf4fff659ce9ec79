"""The composition root: every process (web, workers, beat) is wired here, once, from one `Settings`.

`build_runtime(settings)` makes the Redis client, the job store with its terminal hook, the blob store, the
enqueuer (with the per-key fair queues in front of Celery), the fleet limiter, the circuit breaker, the outcome
recorder and the per-key submission limiter. `api.create_app` and
`workers.context.build_context` both start from it, so the two sides cannot drift apart. It lives in
`monitoring` because the terminal hook (metrics, outcome samples, the webhook) is part of every process's
wiring and `monitoring` is the highest layer both `api` and `workers` may import (docs/architecture.md,
"Layers and ownership"). Tests pass their own clock, Redis, blobs or enqueuer; nothing here is probed for
being a test double.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis

from monitoring.hooks import install_terminal_hook
from monitoring.outcomes import OutcomeRecorder
from shared.apikeys import KeyRing
from shared.blobs import BlobStore, blob_store
from shared.catalogue import check_configured, load_catalogue, model_limits
from shared.circuit import CircuitBreaker
from shared.clock import Clock, SystemClock
from shared.fairqueue import FairQueue
from shared.jobs.store import JobStore
from shared.keyquota import SubmissionLimiter
from shared.limiter import FleetLimiter
from shared.liveness import WorkerRegistry
from shared.queueing import CeleryEnqueuer, Enqueuer, make_celery
from shared.redis_conn import redis_client
from shared.settings import Settings


@dataclass(slots=True)
class Runtime:
    """What a process needs to serve requests or run stages; built by `build_runtime`."""

    settings: Settings
    clock: Clock
    redis: redis.Redis  # for fleet state outside the job record (limiter, circuit, alerts, reports, liveness)
    store: JobStore
    blobs: BlobStore
    enqueuer: Enqueuer
    limiter: FleetLimiter
    breaker: CircuitBreaker
    recorder: OutcomeRecorder
    keyring: KeyRing = field(default_factory=lambda: KeyRing(b"", []))
    quotas: SubmissionLimiter | None = None  # per-key submissions/min; None (hand-built test contexts) = no limit

    def liveness(self) -> WorkerRegistry:
        """Worker and beat heartbeats, judged by this process's clock and the configured interval."""
        return WorkerRegistry(self.redis, self.settings.redis_prefix, self.clock, self.settings.worker_heartbeat_s)


def build_runtime(settings: Settings, *, clock: Clock | None = None, redis_conn: redis.Redis | None = None,
                  blobs: BlobStore | None = None, enqueuer: Enqueuer | None = None) -> Runtime:
    clock = clock or SystemClock()
    # The model catalogue loads and names the configured default: a bad NANOEDIT_MODELS_FILE fails start-up.
    check_configured(settings.models_file, settings.gemini_model,
                     datetime.fromtimestamp(clock.now(), UTC).date())
    r = redis_conn if redis_conn is not None else redis_client(settings)
    enq = enqueuer if enqueuer is not None else CeleryEnqueuer(
        make_celery(settings), fair=FairQueue(r, settings.redis_prefix), ready=settings.fair_queue_depth)
    store = JobStore(r, settings.redis_prefix, clock)
    recorder = OutcomeRecorder(r, settings.redis_prefix, clock)
    install_terminal_hook(store, recorder, enq.webhook)
    return Runtime(
        settings=settings, clock=clock, redis=r, store=store,
        blobs=blobs if blobs is not None else blob_store(settings),  # NANOEDIT_BLOB_URL (shared/blobs.py)
        enqueuer=enq,
        limiter=FleetLimiter(r, settings.redis_prefix, settings.limit_config(),
                             model_limits=model_limits(load_catalogue(settings.models_file))),
        breaker=CircuitBreaker(r, settings.redis_prefix, settings.circuit_config(), clock),
        recorder=recorder,
        keyring=KeyRing.from_settings(settings),
        quotas=SubmissionLimiter(r, settings.redis_prefix),
    )
