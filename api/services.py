"""What the API's routes use, built once per process by `create_app` and reached through `services()`."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from shared.blobs import BlobStore
from shared.circuit import CircuitBreaker
from shared.clock import Clock
from shared.jobs.store import JobStore
from shared.limiter import FleetLimiter
from shared.queueing import Enqueuer
from shared.redis_conn import Keys
from shared.settings import Settings


@dataclass(slots=True)
class Services:
    settings: Settings
    redis: redis.Redis
    keys: Keys
    store: JobStore
    blobs: BlobStore
    enqueuer: Enqueuer
    clock: Clock
    limiter: FleetLimiter
    breaker: CircuitBreaker


def services() -> Services:
    svc: Services = current_app.extensions["nanoedit"]
    return svc
