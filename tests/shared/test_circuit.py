"""CircuitBreaker against a real Redis (db 1, flushed around each test) with a fake clock: no test sleeps."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from shared.circuit import CircuitBreaker, CircuitConfig, Decision
from shared.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(redis_db: redis.Redis, clock: FakeClock, **config: Any) -> CircuitBreaker:
    return CircuitBreaker(redis_db, "t", CircuitConfig(**config), clock)


def trip(cb: CircuitBreaker) -> None:
    for _ in range(cb.config.consecutive_failures):
        cb.record_failure()
    assert cb.state()["state"] == "open"


def test_opens_after_n_consecutive_failures(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock, consecutive_failures=5)
    # Given four transient failures in a row, the circuit is still closed
    for _ in range(4):
        assert cb.record_failure() == "closed"
    assert cb.allow() == Decision(allowed=True, state="closed", retry_in_s=0.0, probe=False)
    # When the fifth arrives
    # Then it opens and callers are refused
    assert cb.record_failure() == "open"
    assert not cb.allow().allowed
    assert cb.state()["consecutive_failures"] == 5


def test_a_success_in_between_resets_the_consecutive_count(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock, consecutive_failures=5)
    # Given four failures, one success, four failures (9 calls: below min_calls, so the ratio cannot trip)
    for _ in range(4):
        cb.record_failure()
    cb.record_success()
    for _ in range(4):
        cb.record_failure()
    # Then the circuit is closed with a count of 4
    snapshot = cb.state()
    assert (snapshot["state"], snapshot["consecutive_failures"]) == ("closed", 4)
    assert (snapshot["window_calls"], snapshot["window_failures"]) == (9, 8)


def test_opens_on_failure_ratio_once_min_calls_is_reached(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock)
    # Given alternating failure/success: never 5 in a row, but half of all calls fail
    for _ in range(9):
        cb.record_failure()
        cb.record_success()
    cb.record_failure()
    # Then with 19 calls (< min_calls 20) it stays closed despite 10/19 failing
    assert cb.state()["state"] == "closed"
    # When one more success and one more failure make 21 calls, 11 failed
    cb.record_success()
    assert cb.record_failure() == "open"
    # Then it opened and says why
    assert "11 of 21 calls failed" in cb.history()[0]["reason"]


def test_a_low_failure_ratio_does_not_open(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock)
    # Given 40 calls of which a quarter fail (never consecutively)
    for _ in range(10):
        cb.record_failure()
        cb.record_success()
        cb.record_success()
        cb.record_success()
    # Then it stays closed
    assert cb.state()["state"] == "closed"


def test_old_buckets_fall_out_of_the_window(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock)
    # Given 19 calls, 10 failed, a minute and a bit ago
    for _ in range(9):
        cb.record_failure()
        cb.record_success()
    cb.record_failure()
    clock.advance(61)
    # When another failure comes
    cb.record_success()  # (break the consecutive run: only the window is under test)
    state_after = cb.record_failure()
    # Then the old calls no longer count: 2 calls in the window, still closed
    assert state_after == "closed"
    snapshot = cb.state()
    assert (snapshot["window_calls"], snapshot["window_failures"]) == (2, 1)


def test_calls_spread_over_the_window_still_count(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock)
    # Given 20 alternating calls spread 2.5 s apart (50 s: inside the 60 s window)
    for _ in range(10):
        cb.record_success()
        clock.advance(2.5)
        cb.record_failure()
        clock.advance(2.5)
    # Then the window saw them all and the ratio opened the circuit
    assert cb.state()["state"] == "open"


def test_refused_while_open_with_the_remaining_time(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock, open_s=30)
    # Given a circuit that opened 10 s ago
    trip(cb)
    clock.advance(10)
    # When a caller asks
    decision = cb.allow()
    # Then it is refused and told to come back in 20 s
    assert decision == Decision(allowed=False, state="open", retry_in_s=20.0, probe=False)
    assert cb.state()["retry_in_s"] == 20.0
    assert cb.state()["opened_at"] == clock.now() - 10


def test_after_open_s_exactly_one_of_eight_racing_workers_gets_the_probe(
        redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock, open_s=30)
    # Given an open circuit whose open period has just elapsed
    trip(cb)
    clock.advance(30)
    decisions: list[Decision] = []
    barrier = threading.Barrier(8, timeout=5)
    pool = redis_db.connection_pool

    def worker() -> None:
        client = redis.Redis(connection_pool=redis.ConnectionPool(  # its own pool: a separate connection
            connection_class=pool.connection_class, **pool.connection_kwargs))
        mine = CircuitBreaker(client, "t", cb.config, clock)
        mine.state()  # connect and load the scripts before the start line
        barrier.wait()
        decisions.append(mine.allow())
        client.close()

    # When eight workers on separate connections ask at once
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly one holds the probe; the rest are refused in half_open
    assert len(decisions) == 8
    assert [d.probe for d in decisions].count(True) == 1
    assert [d.allowed for d in decisions].count(True) == 1
    assert {d.state for d in decisions} == {"half_open"}
    assert [h["to"] for h in cb.history()].count("half_open") == 1


def test_a_successful_probe_closes_the_circuit(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock, open_s=30)
    trip(cb)
    clock.advance(30)
    # Given a granted probe
    assert cb.allow().probe
    # When it succeeds
    assert cb.record_success(probe=True) == "closed"
    # Then calls flow again, with fresh counters
    assert cb.allow() == Decision(allowed=True, state="closed", retry_in_s=0.0, probe=False)
    snapshot = cb.state()
    assert (snapshot["consecutive_failures"], snapshot["window_calls"], snapshot["opened_at"]) == (0, 0, None)


def test_a_failed_probe_reopens_for_another_open_s(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock, open_s=30)
    trip(cb)
    clock.advance(30)
    assert cb.allow().probe
    clock.advance(2)
    # When the probe fails
    assert cb.record_failure(probe=True) == "open"
    # Then the circuit is open for a full open_s from now
    assert cb.allow() == Decision(allowed=False, state="open", retry_in_s=30.0, probe=False)
    clock.advance(30)
    assert cb.allow().probe


def test_a_non_probe_report_in_half_open_does_not_decide(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock, open_s=30)
    trip(cb)
    clock.advance(30)
    assert cb.allow().probe
    # When calls started before the circuit opened report late
    cb.record_success()
    cb.record_failure()
    # Then only the probe decides
    assert cb.state()["state"] == "half_open"
    assert cb.record_success(probe=True) == "closed"


def test_an_unreported_probe_expires_and_a_new_one_is_granted(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock, open_s=30)
    trip(cb)
    clock.advance(30)
    # Given a probe whose worker died without reporting
    assert cb.allow().probe
    clock.advance(10)
    # Then others are refused while it is out, told when its slot frees
    assert cb.allow() == Decision(allowed=False, state="half_open", retry_in_s=20.0, probe=False)
    clock.advance(19.5)
    assert not cb.allow().allowed
    # When open_s has passed since it was granted
    clock.advance(0.5)
    # Then a new probe is granted, and the history says why
    assert cb.allow().probe
    assert "not reported" in cb.history()[0]["reason"]


def test_several_probe_slots(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock, open_s=30, half_open_probes=2)
    trip(cb)
    clock.advance(30)
    # Given two probe slots, the third caller is refused
    assert [cb.allow().probe for _ in range(3)] == [True, True, False]
    assert cb.state()["probes_out"] == 2
    # When one probe fails, the circuit reopens and the other probe's late success changes nothing
    assert cb.record_failure(probe=True) == "open"
    assert cb.record_success(probe=True) == "open"


def test_force_open_holds_until_forced_closed(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock, open_s=30)
    # When an operator forces it open
    cb.force("open")
    # Then it stays open past open_s, with no probing
    clock.advance(300)
    decision = cb.allow()
    assert (decision.allowed, decision.state, decision.probe) == (False, "open", False)
    assert cb.state()["forced"] is True
    # When the operator closes it
    cb.force("closed")
    # Then calls flow and the counters are reset
    assert cb.allow().allowed
    assert cb.state() | {"window_s": 0} == {
        "state": "closed", "consecutive_failures": 0, "window_calls": 0, "window_failures": 0, "window_s": 0,
        "opened_at": None, "retry_in_s": 0.0, "forced": False, "probes_out": 0}
    with pytest.raises(ValueError):
        cb.force("half_open")


def test_history_records_each_transition_with_its_reason(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock, open_s=30, consecutive_failures=5)
    start = clock.now()
    # Given a full cycle: trip, probe fails, probe succeeds, operator opens
    trip(cb)
    clock.advance(30)
    cb.allow()
    cb.record_failure(probe=True)
    clock.advance(30)
    cb.allow()
    cb.record_success(probe=True)
    cb.force("open", reason="provider incident #12")
    # Then the history lists every step, newest first, with times and reasons
    rows = cb.history()
    assert [(h["from"], h["to"]) for h in rows] == [
        ("closed", "open"), ("half_open", "closed"), ("open", "half_open"), ("half_open", "open"),
        ("open", "half_open"), ("closed", "open")]
    assert [h["reason"] for h in rows][:2] == ["provider incident #12", "probe succeeded"]
    assert rows[3]["reason"] == "probe failed"
    assert rows[-1]["reason"] == "5 consecutive transient failures"
    assert rows[-1]["at"] == start and rows[0]["at"] == start + 60


def test_history_is_capped(redis_db: redis.Redis, clock: FakeClock) -> None:
    cb = make(redis_db, clock)
    for _ in range(30):
        cb.force("open")
        cb.force("closed")
    assert len(cb.history()) == 50
    assert redis_db.llen("t:circuit:history") == 50


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        CircuitConfig(failure_ratio=0)
    with pytest.raises(ValueError):
        CircuitConfig(half_open_probes=0)
    assert CircuitConfig().bucket_s == 1.0 and CircuitConfig().buckets == 60
    assert CircuitConfig(window_s=600).bucket_s == 10.0
