"""JobStore against a real Redis (db 1, flushed around each test) with a fake clock."""

from __future__ import annotations

import threading

import pytest
import redis

from shared.blobs import MemoryBlobStore, input_key
from shared.clock import FakeClock
from shared.errors import Gone
from shared.jobs.model import Job, OutputResult, OutputStatus
from shared.jobs.store import JobStore


def make_job(clock: FakeClock, job_id: str, num_images: int = 1, owner: str = "anonymous") -> Job:
    now = clock.now()
    return Job(id=job_id, owner=owner, status="queued", stage="queued", operation="edit", num_images=num_images,
               instruction="grayscale", image_description="", created_at=now, expires_at=now + 3600,
               deadline_at=now + 600)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(redis_db: redis.Redis, clock: FakeClock) -> JobStore:
    return JobStore(redis_db, "t", clock)


def test_created_job_reads_back(store: JobStore, clock: FakeClock) -> None:
    store.create(make_job(clock, "a" * 32, num_images=2))
    job = store.get("a" * 32)
    assert job is not None
    assert (job.status, job.num_images, job.instruction) == ("queued", 2, "grayscale")
    assert store.get("b" * 32) is None


def test_terminal_job_never_changes_again(store: JobStore, clock: FakeClock) -> None:
    store.create(make_job(clock, "a" * 32))
    assert store.transition("a" * 32, "running").ok
    assert store.finish("a" * 32, "succeeded").ok
    for to in ("running", "failed", "canceled", "canceling", "succeeded"):
        result = store.transition("a" * 32, to)
        assert not result.ok and result.previous == "succeeded"
    assert not store.set_stage("a" * 32, "generating")


def test_invalid_transition_is_refused(store: JobStore, clock: FakeClock) -> None:
    store.create(make_job(clock, "a" * 32))
    assert not store.transition("a" * 32, "succeeded").ok  # queued → succeeded skips running
    assert store.status_of("a" * 32) == "queued"


def test_exactly_one_concurrent_terminal_write_wins(store: JobStore, clock: FakeClock,
                                                    redis_db: redis.Redis) -> None:
    store.create(make_job(clock, "a" * 32))
    store.transition("a" * 32, "running")
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def racer(status: str) -> None:
        mine = JobStore(redis.Redis(connection_pool=redis_db.connection_pool), "t", clock)
        barrier.wait()
        if mine.finish("a" * 32, status).ok:
            wins.append(status)

    threads = [threading.Thread(target=racer, args=(s,)) for s in ["succeeded", "failed"] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.status_of("a" * 32) == wins[0]


def test_queue_position_follows_submission_order(store: JobStore, clock: FakeClock) -> None:
    for i in range(5):
        store.create(make_job(clock, f"{i:032x}"))
        clock.advance(1)
    assert [store.queue_position(f"{i:032x}") for i in range(5)] == [1, 2, 3, 4, 5]
    store.unmark_waiting("preprocess", f"{0:032x}")
    assert store.queue_position(f"{4:032x}") == 4
    assert store.queue_position(f"{0:032x}") is None


def test_estimated_wait_comes_from_recent_throughput(store: JobStore, clock: FakeClock) -> None:
    assert store.estimated_wait_s(3) is None  # no history → no guess
    for i in range(6):
        store.create(make_job(clock, f"{i:032x}"))
        store.transition(f"{i:032x}", "running")
        store.finish(f"{i:032x}", "succeeded")
    rate = store.throughput_per_s()
    assert rate > 0
    assert store.estimated_wait_s(3) is None  # the kept rate (none yet) holds until refreshed or lapsed
    assert store.refresh_rate() == rate  # what beat's pump does every second
    assert store.estimated_wait_s(3) == pytest.approx(3 / rate, rel=0.01)


def test_cancel_queued_is_immediate_and_running_becomes_canceling(store: JobStore, clock: FakeClock) -> None:
    store.create(make_job(clock, "a" * 32))
    store.create(make_job(clock, "b" * 32))
    store.transition("b" * 32, "running")
    assert store.request_cancel("a" * 32).ok and store.status_of("a" * 32) == "canceled"
    assert store.request_cancel("b" * 32).ok and store.status_of("b" * 32) == "canceling"
    assert store.cancel_requested("b" * 32)
    assert not store.request_cancel("a" * 32).ok  # already terminal


def test_record_output_counts_each_index_once(store: JobStore, clock: FakeClock) -> None:
    store.create(make_job(clock, "a" * 32, num_images=2))
    ok, failed = OutputResult(OutputStatus.SUCCEEDED), OutputResult(OutputStatus.FAILED)
    assert store.record_output("a" * 32, 0, ok) == 1
    assert store.record_output("a" * 32, 0, failed) == 1  # redelivery cannot overwrite
    assert store.record_output("a" * 32, 1, failed) == 2
    job = store.get("a" * 32)
    assert job is not None and job.outputs[0]["status"] == "succeeded"
    assert store.record_output("c" * 32, 0, ok) == -1


def test_expired_job_answers_gone_and_data_is_deleted(store: JobStore, clock: FakeClock) -> None:
    blobs = MemoryBlobStore()
    store.create(make_job(clock, "a" * 32))
    blobs.put(input_key("a" * 32, 0), b"x")
    clock.advance(3601)
    with pytest.raises(Gone):
        store.get("a" * 32)  # past expires_at, before the sweep
    assert store.expire_due(blobs) == 1
    assert blobs.blobs == {}
    with pytest.raises(Gone):
        store.get("a" * 32)  # after the sweep: tombstone
    assert store.get("b" * 32) is None


def test_overdue_lists_jobs_past_their_deadline(store: JobStore, clock: FakeClock) -> None:
    store.create(make_job(clock, "a" * 32))
    assert store.overdue() == []
    clock.advance(601)
    assert store.overdue() == ["a" * 32]
    store.transition("a" * 32, "failed")
    assert store.overdue() == []


def test_listing_is_newest_first_with_a_cursor(store: JobStore, clock: FakeClock) -> None:
    for i in range(5):
        store.create(make_job(clock, f"{i:032x}"))
        clock.advance(1)
    first = store.list_ids("anonymous", before_ms=None, limit=2)
    assert [j for j, _ in first] == [f"{4:032x}", f"{3:032x}"]
    second = store.list_ids("anonymous", before_ms=first[-1][1], limit=10)
    assert [j for j, _ in second] == [f"{i:032x}" for i in (2, 1, 0)]
    assert store.list_ids("someone-else", before_ms=None, limit=10) == []


def test_eta_after_an_idle_period_reflects_current_speed(store: JobStore, clock: FakeClock) -> None:
    # Given a service idle for minutes that has just finished 4 jobs in 10 s
    clock.advance(600)
    for i in range(4):
        store.create(make_job(clock, f"{i:032x}"))
        store.transition(f"{i:032x}", "running")
        store.finish(f"{i:032x}", "succeeded")
        clock.advance(2.5)
    # Then a job 4th in line is told ~10 s, not the minutes a 5-minute average would say
    assert store.estimated_wait_s(4) == pytest.approx(10.0, rel=0.05)


def test_a_status_read_carries_the_place_in_line_and_the_eta_in_one_round_trip(
        store: JobStore, clock: FakeClock, redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given two finished jobs (a finish rate) and three waiting in preprocess
    for i in range(2):
        store.create(make_job(clock, f"{i:032x}"))
        store.transition(f"{i:032x}", "running")
        store.finish(f"{i:032x}", "succeeded")
    for i in range(2, 5):
        store.create(make_job(clock, f"{i:032x}"))
        store.mark_waiting("preprocess", f"{i:032x}", clock.now() * 1000 + i)
    rate = store.refresh_rate()
    store.read(f"{2:032x}")  # the first read loads the script (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA)
    sent: list[str] = []
    send = redis_db.execute_command
    monkeypatch.setattr(redis_db, "execute_command", lambda *a, **kw: sent.append(str(a[0])) or send(*a, **kw))
    # When the third waiting job is read, counting the commands the client sends
    read = store.read(f"{4:032x}")
    # Then one command answered everything: the record, its rank and the kept rate
    assert read is not None and read.job.id == f"{4:032x}"
    assert read.queue_position == 3 and read.estimated_wait_s == pytest.approx(3 / rate, abs=0.1)
    assert sent == ["EVALSHA"]
    # And a terminal job has no place in line; another owner's job is unknown to the caller
    done = store.read(f"{0:032x}")
    assert done is not None and done.queue_position is None and done.estimated_wait_s is None
    assert store.read(f"{4:032x}", owner="someone-else") is None
