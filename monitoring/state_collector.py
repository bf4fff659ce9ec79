"""Gauges read from Redis at scrape time: queues, live workers, fleet limiter, circuit, beat heartbeat, alerts.

Registered only in the API's /metrics registry: this is shared fleet state, so exposing it from every process
would multiply it (and `sum()` in a query would be wrong). Each section is read on its own; a section that fails
is logged and left out, so one broken key never costs the whole scrape (`nanoedit_redis_up` says when Redis
itself was unreachable). Names and help texts come from monitoring.metrics.STATE_METRICS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from monitoring.alerts.model import FIRING
from monitoring.alerts.store import AlertStore
from monitoring.metrics import CIRCUIT_STATES, SEVERITIES, STATE_METRICS
from shared.circuit import CircuitBreaker
from shared.clock import Clock
from shared.jobs.store import JobStore
from shared.limiter import FleetLimiter
from shared.liveness import WorkerRegistry
from shared.queueing import ALL_QUEUES, QUEUES, WORKER_QUEUES

log = logging.getLogger("nanoedit.metrics")


def _gauge(name: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, STATE_METRICS[name][1], labels=list(labels) if labels else None)


@dataclass(slots=True, eq=False)  # hashable by identity: registries key collectors in a dict
class RedisStateCollector:
    r: redis.Redis
    prefix: str
    clock: Clock
    jobs: JobStore  # the waiting sets (queue position) belong to the job record
    liveness: WorkerRegistry  # live workers and beat's heartbeat, by the one liveness rule
    limiter: FleetLimiter
    breaker: CircuitBreaker
    queue_depths: Callable[[], dict[str, int]] | None

    def collect(self) -> Iterator[Metric]:
        up = _gauge("nanoedit_redis_up")
        try:
            self.r.ping()
        except Exception:
            log.warning("metrics scrape: Redis unreachable", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for section in (self._queues, self._limiter, self._circuit, self._beat, self._alerts):
            try:
                yield from list(section())
            except Exception:
                log.warning("metrics scrape: a section failed", extra={"section": section.__name__},
                            exc_info=True)

    def _queues(self) -> Iterator[Metric]:
        now = self.clock.now()
        live_counts = self.liveness.live_counts(WORKER_QUEUES)
        waiting = _gauge("nanoedit_queue_waiting_jobs", ("queue",))
        oldest = _gauge("nanoedit_queue_oldest_age_seconds", ("queue",))
        live = _gauge("nanoedit_workers_live", ("queue",))
        for q in QUEUES:
            count, first_at = self.jobs.waiting_summary(q)
            waiting.add_metric([q], count)
            oldest.add_metric([q], max(0.0, now - first_at) if first_at is not None else 0.0)
        for q in WORKER_QUEUES:
            live.add_metric([q], live_counts[q])
        yield from (waiting, oldest, live)
        if self.queue_depths is not None:
            depths = self.queue_depths()
            depth = _gauge("nanoedit_queue_depth", ("queue",))
            for q in ALL_QUEUES:
                depth.add_metric([q], int(depths.get(q, 0)))
            yield depth

    def _limiter(self) -> Iterator[Metric]:
        state = self.limiter.state()
        in_flight = _gauge("nanoedit_limiter_in_flight")
        in_flight.add_metric([], int(state["in_flight"]))
        cap = _gauge("nanoedit_limiter_concurrency_limit")
        cap.add_metric([], int(state["config"]["concurrency"]))
        cooldown = _gauge("nanoedit_limiter_cooldown_remaining_seconds")
        cooldown.add_metric([], float(state["cooldown_remaining_s"]))
        yield from (in_flight, cap, cooldown)

    def _circuit(self) -> Iterator[Metric]:
        state = self.breaker.state()
        current = _gauge("nanoedit_circuit_state", ("state",))
        for name in CIRCUIT_STATES:
            current.add_metric([name], 1 if state["state"] == name else 0)
        consecutive = _gauge("nanoedit_circuit_consecutive_failures")
        consecutive.add_metric([], int(state["consecutive_failures"]))
        yield from (current, consecutive)

    def _beat(self) -> Iterator[Metric]:
        seconds = self.liveness.beat_age_s()
        if seconds is not None:  # absent when beat never ran: the absent() rule is the dead-man's switch
            age = _gauge("nanoedit_beat_heartbeat_age_seconds")
            age.add_metric([], seconds)
            yield age

    def _alerts(self) -> Iterator[Metric]:
        store = AlertStore(self.r, self.prefix, self.clock)
        counts = dict.fromkeys(SEVERITIES, 0)
        for st in store.states().values():
            if st.state == FIRING:
                counts[st.severity] = counts.get(st.severity, 0) + 1
        firing = _gauge("nanoedit_alerts_firing", ("severity",))
        for severity, n in sorted(counts.items()):
            firing.add_metric([severity], n)
        yield firing
        last = store.last_evaluated_at()
        if last is not None:  # absent before the first evaluation; the beat rules cover a beat that never ran
            age = _gauge("nanoedit_alert_evaluation_age_seconds")
            age.add_metric([], max(0.0, self.clock.now() - last))
            yield age
