"""What a worker process needs to run a stage: the process `Runtime` plus the provider.

Built by `build_context` from `monitoring.runtime.build_runtime` (the composition root shared with the API),
lazily after Celery forks its pool children (connections and SDK clients must not cross a fork). Tests build a
`WorkerContext` directly with stubs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

from monitoring.runtime import Runtime, build_runtime
from shared.queueing import Enqueuer
from shared.settings import Settings
from workers.providers.base import Provider


@dataclass(slots=True)
class WorkerContext(Runtime):
    provider_factory: Callable[[], Provider] = field(kw_only=True)
    _provider: Provider | None = field(default=None, init=False)

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = self.provider_factory()
        return self._provider


def build_context(settings: Settings, enqueuer: Enqueuer | None = None) -> WorkerContext:
    from workers.providers import build_provider  # lazy: keeps google-genai out of processes that never call it

    runtime = build_runtime(settings, enqueuer=enqueuer)
    parts = {f.name: getattr(runtime, f.name) for f in fields(Runtime)}
    return WorkerContext(**parts, provider_factory=lambda: build_provider(settings, runtime.clock))
