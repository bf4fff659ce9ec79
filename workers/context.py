"""What a worker process needs to run a stage, built once per process from the settings.

Built lazily after Celery forks its pool children (connections and SDK clients must not cross a fork).
Tests build a `WorkerContext` directly with stubs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from monitoring.hooks import install_terminal_hook
from monitoring.outcomes import OutcomeRecorder
from shared.blobs import BlobStore, FilesystemBlobStore
from shared.circuit import CircuitBreaker
from shared.clock import Clock, SystemClock
from shared.jobs.store import JobStore
from shared.limiter import FleetLimiter
from shared.queueing import Enqueuer, make_celery
from shared.redis_conn import Keys, redis_client
from shared.settings import Settings
from workers.providers.base import Provider


@dataclass(slots=True)
class WorkerContext:
    settings: Settings
    store: JobStore
    blobs: BlobStore
    enqueuer: Enqueuer
    clock: Clock
    provider_factory: Callable[[], Provider]
    limiter: FleetLimiter
    breaker: CircuitBreaker
    recorder: OutcomeRecorder
    _provider: Provider | None = field(default=None, init=False)

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = self.provider_factory()
        return self._provider


def build_context(settings: Settings, enqueuer: Enqueuer | None = None) -> WorkerContext:
    from workers.providers import build_provider  # lazy: keeps google-genai out of processes that never call it

    clock = SystemClock()
    r = redis_client(settings)
    keys = Keys(settings.redis_prefix)
    enq = enqueuer or Enqueuer(make_celery(settings))
    store = JobStore(r, keys, clock)
    recorder = OutcomeRecorder(r, settings.redis_prefix, clock)
    install_terminal_hook(store, recorder, enq.webhook)
    return WorkerContext(
        settings=settings,
        store=store,
        blobs=FilesystemBlobStore(settings.blob_dir),
        enqueuer=enq,
        clock=clock,
        provider_factory=lambda: build_provider(settings),
        limiter=FleetLimiter(r, settings.redis_prefix, settings.limit_config()),
        breaker=CircuitBreaker(r, settings.redis_prefix, settings.circuit_config(), clock),
        recorder=recorder,
    )
