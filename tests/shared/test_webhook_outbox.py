"""The webhook outbox (shared/jobs/outbox.py) against a real Redis with a fake clock: the terminal write itself
records the delivery, one sender per attempt, the schedule lives in the outbox."""

from __future__ import annotations

import pytest
import redis

from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.jobs.model import Job, JobStatus, WebhookAttempt, WebhookState
from shared.jobs.store import JobStore

JOB = "a" * 32


def make_job(clock: FakeClock, job_id: str = JOB, webhook_url: str = "https://hooks.example/x") -> Job:
    now = clock.now()
    return Job(id=job_id, owner="anonymous", status=JobStatus.QUEUED, stage="queued", operation="edit",
               num_images=1, instruction="grayscale", image_description="", created_at=now, expires_at=now + 3600,
               deadline_at=now + 600, webhook_url=webhook_url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(redis_db: redis.Redis, clock: FakeClock) -> JobStore:
    return JobStore(redis_db, "t", clock)


def finished(store: JobStore, clock: FakeClock, job_id: str = JOB, webhook_url: str = "https://hooks.example/x",
             status: JobStatus = JobStatus.SUCCEEDED) -> str:
    store.create(make_job(clock, job_id, webhook_url))
    assert store.transition(job_id, JobStatus.RUNNING).ok
    assert store.finish(job_id, status).ok
    return job_id


def attempt(n: int, state: WebhookState, status: int | None = 500) -> WebhookAttempt:
    return WebhookAttempt(n=n, at=None, http_status=status, duration_ms=5, state=state)


def test_the_terminal_write_alone_records_the_webhook_owed(store: JobStore, clock: FakeClock,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a process that dies right after its terminal write (nothing after the status CAS runs: no index
    # clean-up, no hook, no enqueue)
    store.create(make_job(clock))
    store.transition(JOB, JobStatus.RUNNING)

    def killed(job_id: str) -> None:
        raise KeyboardInterrupt("SIGKILL right after the terminal write")

    monkeypatch.setattr(store, "_after_terminal", killed)
    with pytest.raises(KeyboardInterrupt):
        store.finish(JOB, JobStatus.SUCCEEDED)
    # Then the delivery is already owed, due now, with its stable id
    delivery = store.webhooks.delivery(JOB)
    assert delivery is not None and delivery.state == WebhookState.PENDING
    assert delivery.webhook_id == f"msg_{JOB}_succeeded" and delivery.next_attempt_at == clock.now()
    assert store.webhooks.take_due(10, look_again_s=60) == [JOB]


def test_only_jobs_with_a_webhook_url_owe_one_and_a_cancel_owes_one_too(store: JobStore, clock: FakeClock) -> None:
    finished(store, clock, "b" * 32, webhook_url="")
    assert store.webhooks.delivery("b" * 32) is None and store.webhooks.owed() == 0
    store.create(make_job(clock, "c" * 32))
    assert store.request_cancel("c" * 32).ok  # a queued job is canceled by the API's own terminal write
    delivery = store.webhooks.delivery("c" * 32)
    assert delivery is not None and delivery.webhook_id == f"msg_{'c' * 32}_canceled"
    assert store.webhooks.owed() == 1


def test_one_sender_per_attempt_and_a_dead_senders_attempt_comes_back(store: JobStore, clock: FakeClock) -> None:
    finished(store, clock)
    first = store.webhooks.claim(JOB, lease_s=30)
    assert first is not None and first.n == 1 and first.first_attempt_at == clock.now()
    assert store.webhooks.claim(JOB, lease_s=30) is None  # a duplicate message finds it in flight
    clock.advance(31)  # the sender died: its lease ends
    second = store.webhooks.claim(JOB, lease_s=30)
    assert second is not None and second.n == 2 and second.first_attempt_at == first.first_attempt_at
    # The dead sender's late result does not move the schedule the live one owns
    assert not store.webhooks.record(first, attempt(1, WebhookState.RETRYING), next_at=clock.now() + 5)
    assert store.webhooks.record(second, attempt(2, WebhookState.RETRYING), next_at=clock.now() + 100)
    assert [a.n for a in store.webhooks.attempts(JOB)] == [1, 2]  # both attempts happened: both are logged


def test_a_retry_is_due_only_at_its_time_and_success_ends_the_delivery(store: JobStore, clock: FakeClock) -> None:
    finished(store, clock)
    claim = store.webhooks.claim(JOB, lease_s=30)
    assert claim is not None
    store.webhooks.record(claim, attempt(1, WebhookState.RETRYING), next_at=clock.now() + 40)
    delivery = store.webhooks.delivery(JOB)
    assert delivery is not None and delivery.state == WebhookState.RETRYING and delivery.last_status == 500
    clock.advance(39)
    assert store.webhooks.claim(JOB, lease_s=30) is None and store.webhooks.take_due(10, 60) == []
    clock.advance(1)
    assert store.webhooks.take_due(10, 60) == [JOB]
    assert store.webhooks.take_due(10, 60) == []  # dispatched: looked at again only after 60 s
    claim = store.webhooks.claim(JOB, lease_s=30)
    assert claim is not None and claim.n == 2
    store.webhooks.record(claim, attempt(2, WebhookState.DELIVERED, 204), next_at=None)
    delivery = store.webhooks.delivery(JOB)
    assert delivery is not None and delivery.state == WebhookState.DELIVERED and delivery.next_attempt_at is None
    assert store.webhooks.owed() == 0 and store.webhooks.claim(JOB, lease_s=30) is None
    assert [(a.n, a.http_status, a.state) for a in store.webhooks.attempts(JOB)] == [
        (1, 500, WebhookState.RETRYING), (2, 204, WebhookState.DELIVERED)]


def test_redeliver_sends_again_with_the_same_id_and_a_new_window(store: JobStore, clock: FakeClock) -> None:
    finished(store, clock)
    claim = store.webhooks.claim(JOB, lease_s=30)
    assert claim is not None
    store.webhooks.record(claim, attempt(1, WebhookState.DELIVERED, 200), next_at=None)
    clock.advance(500)
    store.webhooks.redeliver(JOB, keep_until=clock.now() + 3000)
    delivery = store.webhooks.delivery(JOB)
    assert delivery is not None and delivery.state == WebhookState.PENDING and delivery.first_attempt_at is None
    again = store.webhooks.claim(JOB, lease_s=30)
    assert again is not None and again.n == 2 and again.webhook_id == f"msg_{JOB}_succeeded"
    assert again.first_attempt_at == clock.now()


def test_expiry_deletes_the_delivery_its_log_and_its_due_entry(store: JobStore, clock: FakeClock,
                                                               redis_db: redis.Redis) -> None:
    finished(store, clock)
    claim = store.webhooks.claim(JOB, lease_s=30)
    assert claim is not None
    store.webhooks.record(claim, attempt(1, WebhookState.RETRYING), next_at=clock.now() + 10)
    clock.advance(3601)
    assert store.expire_due(MemoryBlobStore()) == 1
    assert store.webhooks.owed() == 0 and store.webhooks.delivery(JOB) is None
    assert store.webhooks.attempts(JOB) == []
    assert [k for k in redis_db.keys("t:*") if "webhook" in k] == []
