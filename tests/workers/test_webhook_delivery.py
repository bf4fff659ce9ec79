"""Webhook delivery (workers/webhooks.py) with a real Redis, a fake clock and a scripted receiver: retries with
backoff from the outbox, giving up after the retry window, per-key signing secrets, the guard at send time."""

from __future__ import annotations

import base64
import itertools
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from monitoring.outcomes import OutcomeRecorder
from shared.apikeys import ApiKey, KeyRing, hash_key
from shared.blobs import MemoryBlobStore
from shared.circuit import CircuitBreaker
from shared.clock import FakeClock
from shared.jobs.model import Job, JobStatus, WebhookState
from shared.jobs.store import JobStore
from shared.limiter import FleetLimiter
from shared.outbound import OutboundPolicy, Target
from shared.outbound_http import HttpOutcome
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings
from tests.support.receiver import Receiver
from workers import webhooks
from workers.context import WorkerContext

JOB = "a" * 32
DEFAULT_SECRET = "whsec_" + base64.b64encode(b"deployment-secret-0123456789abcd").decode()
SECRET_A = "whsec_" + base64.b64encode(b"tenant-a-secret-0123456789abcdef").decode()
SECRET_B = "whsec_" + base64.b64encode(b"tenant-b-secret-0123456789abcdef").decode()
KEY_A = ApiKey(name="a", key_hash=hash_key(b"s", "key-a"), webhook_secret=SECRET_A)
KEY_B = ApiKey(name="b", key_hash=hash_key(b"s", "key-b"), webhook_secret=SECRET_B)
PUBLIC = OutboundPolicy.build(resolver=lambda host, port: ["93.184.215.14"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def verifies(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """The Standard Webhooks signature check at the message's own timestamp (the fake clock's time, not now)."""
    at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
    expected = Webhook(secret).sign(headers["webhook-id"], at, body.decode())
    return headers["webhook-signature"] == expected


def make_ctx(r: redis.Redis, clock: FakeClock, **settings: Any) -> WorkerContext:
    s = Settings(redis_prefix="t", webhook_secret=DEFAULT_SECRET, **settings)
    return WorkerContext(settings=s, store=JobStore(r, "t", clock), redis=r, blobs=MemoryBlobStore(),
                         enqueuer=RecordingEnqueuer(), clock=clock, provider_factory=lambda: None,  # type: ignore
                         limiter=FleetLimiter(r, "t", s.limit_config()),
                         breaker=CircuitBreaker(r, "t", s.circuit_config(), clock),
                         recorder=OutcomeRecorder(r, "t", clock), keyring=KeyRing(b"s", [KEY_A, KEY_B]))


def finished_job(ctx: WorkerContext, clock: FakeClock, job_id: str = JOB, owner: str = "anonymous",
                 url: str = "https://hooks.example/nanoedit") -> str:
    now = clock.now()
    ctx.store.create(Job(id=job_id, owner=owner, status=JobStatus.QUEUED, stage="queued", operation="edit",
                         num_images=1, instruction="grayscale", image_description="", created_at=now,
                         expires_at=now + 2 * 86400, deadline_at=now + 600, webhook_url=url))
    ctx.store.transition(job_id, JobStatus.RUNNING)
    assert ctx.store.finish(job_id, JobStatus.SUCCEEDED).ok
    return job_id


class ScriptedReceiver:
    """A sender stub: answers `answer(now)` and records (time, target, body, headers) of each request."""

    def __init__(self, clock: FakeClock, answer: Callable[[float], int | None]) -> None:
        self.clock = clock
        self.answer = answer
        self.calls: list[tuple[float, Target, bytes, dict[str, str]]] = []

    def __call__(self, target: Target, body: bytes, headers: Mapping[str, str]) -> HttpOutcome:
        self.calls.append((self.clock.now(), target, body, dict(headers)))
        status = self.answer(self.clock.now())
        return HttpOutcome(status=status, error="" if status else "timeout", duration_ms=12)


def run_until_settled(ctx: WorkerContext, clock: FakeClock, send: ScriptedReceiver,
                      limit: int = 200) -> Sequence[float]:
    """Deliver, then jump to the next due time, until the delivery is delivered or failed."""
    for _ in range(limit):
        webhooks.deliver(ctx, JOB, send=send, policy=PUBLIC, rng=random.Random(7))
        delivery = ctx.store.webhooks.delivery(JOB)
        assert delivery is not None
        if delivery.state.final:
            return [c[0] for c in send.calls]
        assert delivery.next_attempt_at is not None and delivery.next_attempt_at > clock.now()
        clock.advance(delivery.next_attempt_at - clock.now())
    raise AssertionError("never settled")


def test_a_receiver_failing_for_ten_minutes_gets_the_webhook_with_every_attempt_logged(
        redis_db: redis.Redis, clock: FakeClock) -> None:
    # Given a receiver that answers 500 for 10 minutes, then 204
    ctx = make_ctx(redis_db, clock)
    finished_job(ctx, clock)
    start = clock.now()
    send = ScriptedReceiver(clock, lambda now: 500 if now < start + 600 else 204)
    # When the worker delivers every time the outbox says an attempt is due
    times = run_until_settled(ctx, clock, send)
    # Then it is delivered, after backoff that doubles (base 5 s, ½..1 jitter), every attempt in the log
    delivery = ctx.store.webhooks.delivery(JOB)
    assert delivery is not None and delivery.state == WebhookState.DELIVERED and delivery.last_status == 204
    log = ctx.store.webhooks.attempts(JOB)
    assert [a.n for a in log] == list(range(1, len(times) + 1)) and len(times) == delivery.attempts
    assert [a.http_status for a in log] == [500] * (len(log) - 1) + [204]
    assert all(a.state == WebhookState.RETRYING for a in log[:-1]) and log[-1].state == WebhookState.DELIVERED
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for n, gap in enumerate(gaps, start=1):
        ceiling = min(3600.0, 5.0 * 2 ** (n - 1))
        assert ceiling / 2 <= gap <= ceiling, (n, gap)
    assert times[-1] >= start + 600 and times[-2] < start + 600
    # Every attempt carries the same webhook-id and a valid signature
    assert {c[3]["webhook-id"] for c in send.calls} == {f"msg_{JOB}_succeeded"}
    for _, _, body, headers in send.calls:
        assert verifies(DEFAULT_SECRET, body, headers) and json.loads(body)["data"]["id"] == JOB


def test_gives_up_after_the_retry_window(redis_db: redis.Redis, clock: FakeClock) -> None:
    ctx = make_ctx(redis_db, clock, webhook_retry_hours=24.0)
    finished_job(ctx, clock)
    start = clock.now()
    send = ScriptedReceiver(clock, lambda now: 503)
    times = run_until_settled(ctx, clock, send)
    delivery = ctx.store.webhooks.delivery(JOB)
    assert delivery is not None and delivery.state == WebhookState.FAILED and delivery.next_attempt_at is None
    assert times[-1] <= start + 24 * 3600 < times[-1] + 3600  # the last attempt is within the final hour
    assert 25 <= len(times) <= 45  # ~10 doubling retries up to the 1 h cap, then hourly
    assert ctx.store.webhooks.owed() == 0
    assert ctx.store.webhooks.attempts(JOB)[-1].state == WebhookState.FAILED


def test_a_final_answer_is_not_retried(redis_db: redis.Redis, clock: FakeClock) -> None:
    ctx = make_ctx(redis_db, clock)
    finished_job(ctx, clock)
    send = ScriptedReceiver(clock, lambda now: 404)
    assert webhooks.deliver(ctx, JOB, send=send, policy=PUBLIC) is None
    delivery = ctx.store.webhooks.delivery(JOB)
    assert delivery is not None and delivery.state == WebhookState.FAILED and delivery.last_error == "HTTP 404"


def test_duplicate_messages_make_one_attempt(redis_db: redis.Redis, clock: FakeClock) -> None:
    ctx = make_ctx(redis_db, clock)
    finished_job(ctx, clock)
    send = ScriptedReceiver(clock, lambda now: 500)
    again_in = webhooks.deliver(ctx, JOB, send=send, policy=PUBLIC)
    assert again_in is not None and 2.5 <= again_in <= 5.0  # a short backoff also goes out as a countdown
    webhooks.deliver(ctx, JOB, send=send, policy=PUBLIC)  # the dispatcher's copy, before it is due
    assert len(send.calls) == 1


def test_each_tenant_signs_with_its_own_key_secret(redis_db: redis.Redis, clock: FakeClock) -> None:
    ctx = make_ctx(redis_db, clock)
    finished_job(ctx, clock, owner=KEY_A.owner)
    send = ScriptedReceiver(clock, lambda now: 204)
    webhooks.deliver(ctx, JOB, send=send, policy=PUBLIC)
    _, _, body, headers = send.calls[0]
    assert verifies(SECRET_A, body, headers)
    # neither another tenant's secret nor the deployment secret verifies it
    assert not verifies(SECRET_B, body, headers) and not verifies(DEFAULT_SECRET, body, headers)


def test_the_url_is_checked_again_at_send_time(redis_db: redis.Redis, clock: FakeClock) -> None:
    ctx = make_ctx(redis_db, clock)
    finished_job(ctx, clock)
    send = ScriptedReceiver(clock, lambda now: 204)
    # The name now resolves to the metadata address (DNS changed after intake)
    webhooks.deliver(ctx, JOB, send=send, policy=OutboundPolicy.build(resolver=lambda h, p: ["169.254.169.254"]))
    delivery = ctx.store.webhooks.delivery(JOB)
    assert send.calls == [] and delivery is not None and delivery.state == WebhookState.FAILED
    assert delivery.last_error.startswith("refused: ") and "link-local" in delivery.last_error


def test_a_name_that_stops_resolving_is_retried(redis_db: redis.Redis, clock: FakeClock) -> None:
    def gone(host: str, port: int) -> Sequence[str]:
        raise OSError("no such host")

    ctx = make_ctx(redis_db, clock)
    finished_job(ctx, clock)
    webhooks.deliver(ctx, JOB, send=ScriptedReceiver(clock, lambda now: 204),
                     policy=OutboundPolicy.build(resolver=gone))
    delivery = ctx.store.webhooks.delivery(JOB)
    assert delivery is not None and delivery.state == WebhookState.RETRYING
    assert "does not resolve" in delivery.last_error


def test_dispatch_sends_each_due_delivery_once_per_look(redis_db: redis.Redis, clock: FakeClock) -> None:
    ctx = make_ctx(redis_db, clock)
    finished_job(ctx, clock)
    finished_job(ctx, clock, job_id="b" * 32)
    enqueuer = ctx.enqueuer
    assert isinstance(enqueuer, RecordingEnqueuer)
    assert webhooks.dispatch(ctx)["dispatched"] == 2
    assert sorted(s[1] for s in enqueuer.sent if s[0] == "webhook") == [JOB, "b" * 32]
    assert webhooks.dispatch(ctx)["dispatched"] == 0  # already handed out
    enqueuer.depths["webhooks"] = webhooks.DISPATCH_BATCH  # a stopped pool: do not pile up more messages
    clock.advance(3600)
    assert webhooks.dispatch(ctx) == {"dispatched": 0, "skipped": "backlog"}


def test_a_real_post_to_an_allowed_local_receiver(redis_db: redis.Redis) -> None:
    clock = FakeClock(start=time.time())  # the receiver verifies the timestamp against its own clock
    ctx = make_ctx(redis_db, clock, webhook_allow_hosts=("127.0.0.1",), webhook_timeout_s=5.0)
    with Receiver([204]) as receiver:
        finished_job(ctx, clock, url=receiver.url)
        webhooks.deliver(ctx, JOB)
    delivery = ctx.store.webhooks.delivery(JOB)
    assert delivery is not None and delivery.state == WebhookState.DELIVERED
    got = receiver.requests[0]
    assert Webhook(DEFAULT_SECRET).verify(got.body, got.headers)["type"] == "job.finished"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_B).verify(got.body, got.headers)
