"""The fair queue (shared/fairqueue.py) on a real Redis: round-robin between owners, the ready budget, nothing
lost between a line and Celery, and the pump of `CeleryEnqueuer` in front of a real broker list."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from shared.fairqueue import FairQueue, Taken
from shared.queueing import GENERATE_QUEUE, PREPROCESS_QUEUE, CeleryEnqueuer

Q = "preprocess"


@pytest.fixture
def fq(redis_db: redis.Redis) -> FairQueue:
    return FairQueue(redis_db, "t")


def items(taken: list[Taken]) -> list[str]:
    return [t.item for t in taken]


def test_owners_take_turns_and_each_line_stays_fifo(fq: FairQueue) -> None:
    # Given a backlog of five from A, then one from B and two from C
    fq.push(Q, "A", *(f"a{i}" for i in range(5)))
    fq.push(Q, "B", "b0")
    fq.push(Q, "C", "c0", "c1")
    # When everything is taken, three at a time
    order = items(fq.take(Q, ready=3)) + items(fq.take(Q, ready=6)) + items(fq.take(Q, ready=12))
    # Then the owners alternate (B and C are not stuck behind A's backlog), and each owner's order is kept
    assert order[:3] == ["a0", "b0", "c0"]
    assert order == ["a0", "b0", "c0", "a1", "c1", "a2", "a3", "a4"]
    assert fq.backlog(Q).owners == 0


def test_a_newcomer_waits_behind_one_item_of_a_big_backlog(fq: FairQueue) -> None:
    fq.push(Q, "A", *(f"a{i}" for i in range(300)))
    fq.ack(Q, fq.take(Q, ready=10))
    # B arrives after A queued 300: at most one more A item goes before it
    fq.push(Q, "B", "b0")
    nxt = items(fq.take(Q, ready=20))
    assert nxt.index("b0") <= 1


def test_take_keeps_at_most_ready_messages_in_the_celery_list(redis_db: redis.Redis, fq: FairQueue) -> None:
    fq.push(Q, "A", *(f"a{i}" for i in range(20)))
    redis_db.rpush(Q, "m1", "m2", "m3")  # three messages already wait in the broker list
    # Then only ready − 3 are taken; taken-but-unacked items count against the budget too
    first = fq.take(Q, ready=8)
    assert len(first) == 5
    assert fq.take(Q, ready=8) == []
    fq.ack(Q, first)
    redis_db.delete(Q)
    assert len(fq.take(Q, ready=8)) == 8


def test_two_pumps_never_take_the_same_item(redis_db: redis.Redis) -> None:
    a, b = FairQueue(redis_db, "t"), FairQueue(redis_db, "t")
    a.push(Q, "A", *(f"a{i}" for i in range(50)))
    a.push(Q, "B", *(f"b{i}" for i in range(50)))
    got: list[str] = []
    for _ in range(20):
        for q in (a, b):
            taken = q.take(Q, ready=7)
            got += items(taken)
            q.ack(Q, taken)
    assert len(got) == len(set(got)) == 100


def test_a_failed_send_goes_back_to_the_head_of_its_line(fq: FairQueue) -> None:
    fq.push(Q, "A", "a0", "a1", "a2")
    fq.push(Q, "B", "b0")
    taken = fq.take(Q, ready=3)  # a0, b0, a1
    fq.ack(Q, taken[:1])
    fq.give_back(Q, taken[1:])  # b0 and a1 were not sent
    assert fq.backlog(Q).items == 3
    assert sorted(items(fq.take(Q, ready=10))) == ["a1", "a2", "b0"]
    assert items(fq.take(Q, ready=10)) == []


def test_work_of_a_pump_that_died_comes_back_after_the_stale_time(redis_db: redis.Redis) -> None:
    fq = FairQueue(redis_db, "t", stale_after_s=0.2)
    fq.push(Q, "A", "a0", "a1")
    lost = fq.take(Q, ready=1)  # taken, then the process dies before sending or acking
    assert items(lost) == ["a0"]
    assert fq.backlog(Q).items == 2  # still counted: nothing is lost
    assert fq.take(Q, ready=1) == []  # the budget is held by the taken item until it is stale
    time.sleep(0.3)
    assert items(fq.take(Q, ready=2)) == ["a0", "a1"]  # back at the head of its line


def test_owners_with_a_bar_are_refused(fq: FairQueue) -> None:
    with pytest.raises(ValueError):
        fq.push(Q, "a|b", "x")
    with pytest.raises(ValueError):
        fq.push(Q, "A")


class FakeCelery:
    """Stands in for the Celery app's send_task: appends the message to the broker list like kombu does."""

    def __init__(self, r: redis.Redis, fail_after: int | None = None) -> None:
        self.r = r
        self.sent: list[tuple[str, str]] = []
        self.fail_after = fail_after

    def send_task(self, name: str, args: list[Any], task_id: str, queue: str, **_: Any) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise ConnectionError("broker down")
        self.sent.append((queue, task_id))
        self.r.rpush(queue, task_id)


def test_the_enqueuer_admits_through_the_lines_and_pumps_round_robin(redis_db: redis.Redis) -> None:
    celery = FakeCelery(redis_db)
    enq = CeleryEnqueuer(celery, fair=FairQueue(redis_db, "t"), ready=4)  # type: ignore[arg-type]
    for i in range(10):
        enq.preprocess(f"a{i:031d}", owner="key-a")
    enq.preprocess("b" * 32, owner="key-b")
    # Only `ready` went to Celery; the rest waits in the fair lines and still counts as depth
    assert [t for _, t in celery.sent] == [f"a{i:031d}.preprocess" for i in range(4)]
    # A worker takes two messages and pumps: B's job goes in this round (one A item at most before it),
    # not after A's six others
    redis_db.lpop(PREPROCESS_QUEUE, 2)
    assert enq.pump(PREPROCESS_QUEUE) == 2
    assert [t for _, t in celery.sent[4:]] == [f"a{4:031d}.preprocess", "b" * 32 + ".preprocess"]
    # First generate attempts go through the line; retries (countdown) go straight to Celery
    enq.generate("c" * 32, 0, owner="key-a")
    enq.generate("c" * 32, 1, attempt=2, countdown=1.0)
    assert (GENERATE_QUEUE, "c" * 32 + ".generate.0.1") in celery.sent
    assert (GENERATE_QUEUE, "c" * 32 + ".generate.1.2") in celery.sent


def test_a_pump_that_cannot_send_keeps_every_item(redis_db: redis.Redis) -> None:
    fq = FairQueue(redis_db, "t")
    celery = FakeCelery(redis_db, fail_after=1)
    enq = CeleryEnqueuer(celery, fair=fq, ready=8)  # type: ignore[arg-type]
    for i in range(3):
        enq.preprocess(f"{i:032d}", owner="key-a")  # the pump fails quietly after one send: work stays queued
    assert len(celery.sent) == 1 and fq.backlog(PREPROCESS_QUEUE).items == 2
    celery.fail_after = None
    assert enq.pump(PREPROCESS_QUEUE) == 2
    assert [t for _, t in celery.sent] == [f"{i:032d}.preprocess" for i in range(3)]


def test_an_admission_rides_in_the_record_transaction_and_survives_a_flushed_script_cache(
        redis_db: redis.Redis) -> None:
    from shared.clock import FakeClock
    from shared.jobs.store import JobStore
    from tests.shared.test_job_store import make_job

    clock = FakeClock(1_000_000.0)
    store, celery = JobStore(redis_db, "t", clock), FakeCelery(redis_db)
    enq = CeleryEnqueuer(celery, fair=FairQueue(redis_db, "t"), ready=4)  # type: ignore[arg-type]
    finish: list[Any] = []
    # Given the Lua cache of a Redis that has just restarted
    redis_db.script_flush()
    # When a job is created with its admission queued on the record's transaction
    created = store.create(make_job(clock, "a" * 32, owner="key-a"),
                           admit=lambda pipe: finish.append(enq.admit_preprocess(pipe, "a" * 32, "key-a")))
    # Then the record is written and its place in line read in the same transaction, the admission's NOSCRIPT
    # reply is handed back, and finishing it pushes again and pumps: the job reaches the Celery queue
    assert created.position == 1 and isinstance(created.admit_reply, redis.exceptions.NoScriptError)
    finish[0](created.admit_reply)
    assert [t for _, t in celery.sent] == ["a" * 32 + ".preprocess"]
    # And with the script loaded, the next admission is one reply (room: 1) and the pump sends it
    created = store.create(make_job(clock, "b" * 32, owner="key-b"),
                           admit=lambda pipe: finish.append(enq.admit_preprocess(pipe, "b" * 32, "key-b")))
    assert created.admit_reply == 1 and created.position == 2
    finish[1](created.admit_reply)
    assert [t for _, t in celery.sent][-1] == "b" * 32 + ".preprocess"
