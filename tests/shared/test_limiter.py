"""FleetLimiter against a real Redis (db 1, flushed around each test).

Most tests never need Redis time to move: a limit of 60/min refuses the immediate second call with wait ≈ 1 s.
The few that do (lease expiry, the hammer and the RPM property) wait in small bounded steps.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import cast

import pytest
import redis

from shared.limiter import Acquire, FleetLimiter, LimitConfig
from tests.support.clocks import HookedClock

PREFIX = "t"


@pytest.fixture
def limiter(redis_db: redis.Redis) -> FleetLimiter:
    return FleetLimiter(redis_db, PREFIX, LimitConfig(concurrency=2, rpm=0, images_per_min=0, lease_s=60.0))


def wait_until_granted(limiter: FleetLimiter, holder: str, timeout_s: float) -> Acquire:
    deadline = time.monotonic() + timeout_s
    while True:
        result = limiter.try_acquire(holder)
        if result.granted or time.monotonic() > deadline:
            return result
        time.sleep(min(result.wait_s, 0.05))


# -- concurrency --------------------------------------------------------------------------------------
def test_concurrency_cap_refuses_and_release_frees_a_slot(limiter: FleetLimiter) -> None:
    assert limiter.try_acquire("a").granted
    assert limiter.try_acquire("b").granted

    refused = limiter.try_acquire("c")

    assert (refused.granted, refused.reason) == (False, "concurrency")
    assert 0 < refused.wait_s <= 1.0  # capped poll interval, not the 60 s lease expiry
    assert limiter.in_flight() == 2
    limiter.release("a")
    assert limiter.try_acquire("c") == Acquire(granted=True, wait_s=0.0, reason="granted")
    assert limiter.in_flight() == 2


def test_same_holder_is_idempotent_and_not_charged_twice(limiter: FleetLimiter) -> None:
    limiter.set_config(concurrency=1, rpm=60, images_per_min=60)
    assert limiter.try_acquire("a").granted

    again = limiter.try_acquire("a")

    assert again.granted  # neither the concurrency cap nor the rpm/images TATs it set refuse it
    assert limiter.in_flight() == 1
    assert limiter.try_acquire("b").reason in ("concurrency", "rpm", "images_per_min")


def test_expired_lease_of_a_killed_holder_frees_its_slot(limiter: FleetLimiter) -> None:
    limiter.set_config(concurrency=1, lease_s=0.2)
    assert limiter.try_acquire("killed").granted
    assert limiter.renew("killed") is True

    refused = limiter.try_acquire("next")
    assert refused.reason == "concurrency"
    assert refused.wait_s <= 0.2  # the earliest expiry is sooner than the poll cap

    # Given the holder dies without releasing, when its lease runs out, then the slot is reusable.
    assert wait_until_granted(limiter, "next", timeout_s=2.0).granted
    assert limiter.renew("killed") is False
    assert limiter.in_flight() == 1


# -- rates --------------------------------------------------------------------------------------------
def test_rpm_refuses_the_immediate_second_request(limiter: FleetLimiter) -> None:
    limiter.set_config(rpm=60, concurrency=10)
    assert limiter.try_acquire("a").granted

    refused = limiter.try_acquire("b")

    assert (refused.granted, refused.reason) == (False, "rpm")
    assert 0.9 < refused.wait_s <= 1.0


def test_images_per_min_refuses_independently_of_rpm(limiter: FleetLimiter) -> None:
    limiter.set_config(images_per_min=120)  # T = 0.5 s per image; rpm uncapped
    assert limiter.try_acquire("a", images=4).granted
    limiter.release("a")

    refused = limiter.try_acquire("b")

    assert (refused.granted, refused.reason) == (False, "images_per_min")
    assert 1.9 < refused.wait_s <= 2.0  # four images charged: 4 × 0.5 s


def test_a_refused_call_charges_nothing(limiter: FleetLimiter, redis_db: redis.Redis) -> None:
    # Given the images dimension is exhausted while rpm has no cap yet
    limiter.set_config(images_per_min=60)
    assert limiter.try_acquire("a").granted
    limiter.release("a")
    limiter.set_config(rpm=60)
    # When a call is refused on images
    assert limiter.try_acquire("b").reason == "images_per_min"
    assert not redis_db.exists(limiter.tat_requests_key)
    # Then it consumed no rpm budget: lifting the images cap admits the next call at once
    limiter.set_config(images_per_min=0)
    assert limiter.try_acquire("c").granted
    assert limiter.in_flight() == 1


def test_refusal_reports_the_dimension_that_binds_longest(limiter: FleetLimiter) -> None:
    limiter.set_config(concurrency=1, rpm=6)  # T = 10 s
    assert limiter.try_acquire("a").granted

    refused = limiter.try_acquire("b")

    assert refused.reason == "rpm"  # both refuse; retrying before the rpm wait is pointless
    assert 9.9 < refused.wait_s <= 10.0


# -- cooldown -----------------------------------------------------------------------------------------
def test_cooldown_refuses_everyone_and_reports_remaining_time(limiter: FleetLimiter,
                                                              redis_db: redis.Redis) -> None:
    limiter.cooldown(5)

    refused = limiter.try_acquire("a")

    assert (refused.granted, refused.reason) == (False, "cooldown")
    assert 4.9 < refused.wait_s <= 5.0
    assert 4.9 < limiter.cooldown_remaining_s() <= 5.0
    assert limiter.in_flight() == 0
    limiter.cooldown(1)  # a shorter pause never cuts a longer one short
    assert limiter.cooldown_remaining_s() > 4.9
    limiter.cooldown(30)
    assert 29.9 < limiter.cooldown_remaining_s() <= 30.0
    assert 0 < redis_db.pttl(limiter.cooldown_key) <= 30_000


def test_no_cooldown_means_zero_remaining(limiter: FleetLimiter) -> None:
    assert limiter.cooldown_remaining_s() == 0.0
    limiter.cooldown(0)
    assert limiter.try_acquire("a").granted


# -- runtime configuration ----------------------------------------------------------------------------
def test_runtime_config_change_applies_fleet_wide_at_once(limiter: FleetLimiter, redis_db: redis.Redis) -> None:
    other_process = FleetLimiter(redis_db, PREFIX, LimitConfig(concurrency=2, lease_s=60.0))
    limiter.set_config(concurrency=1)
    assert limiter.try_acquire("a").granted
    assert other_process.try_acquire("b").reason == "concurrency"

    config = other_process.set_config(concurrency=3)

    assert config == LimitConfig(concurrency=3, rpm=0, images_per_min=0, lease_s=60.0)
    assert limiter.get_config().concurrency == 3
    assert limiter.try_acquire("b").granted
    assert other_process.try_acquire("c").granted
    assert limiter.try_acquire("d").reason == "concurrency"
    limiter.reset_config()
    assert limiter.get_config() == limiter.defaults


def test_set_config_validates_before_storing(limiter: FleetLimiter) -> None:
    for bad in ({"concurrency": 0}, {"rpm": -1}, {"rpm": 1.5}, {"lease_s": 0}, {"bogus": 1},
                {"images_per_min": float("nan")}):
        with pytest.raises(ValueError):
            limiter.set_config(**bad)
    assert limiter.overrides() == {}
    limiter.set_config(rpm=30, lease_s=5)
    assert limiter.set_config(rpm=None) == LimitConfig(concurrency=2, rpm=0, images_per_min=0, lease_s=5.0)


def test_invalid_stored_override_falls_back_to_default(limiter: FleetLimiter, redis_db: redis.Redis) -> None:
    redis_db.hset(limiter.config_key, mapping={"concurrency": "zero", "rpm": "-5"})
    assert limiter.get_config() == limiter.defaults
    assert limiter.try_acquire("a").granted
    assert limiter.try_acquire("b").granted  # the default concurrency 2 applies in Lua too
    assert limiter.try_acquire("c").reason == "concurrency"


def test_state_reports_config_leases_cooldown_and_next_admission(limiter: FleetLimiter) -> None:
    limiter.set_config(rpm=60)
    limiter.try_acquire("a")
    limiter.cooldown(3)

    state = limiter.state()

    assert state["config"] == {"concurrency": 2, "rpm": 60, "images_per_min": 0, "lease_s": 60.0}
    assert state["overrides"] == {"rpm": 60}
    assert (state["in_flight"], state["free_slots"]) == (1, 1)
    assert state["leases"][0]["holder"] == "a"
    assert 2.9 < state["cooldown_remaining_s"] <= 3.0
    assert 0.9 < state["next_request_in_s"] <= 1.0
    assert state["next_image_in_s"] == 0.0
    assert 2.9 < state["next_admission_at"] - state["redis_time"] <= 3.0


# -- acquire_blocking ---------------------------------------------------------------------------------
def test_acquire_blocking_polls_with_jitter_until_a_slot_frees(limiter: FleetLimiter) -> None:
    limiter.set_config(concurrency=1)
    limiter.try_acquire("a")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            limiter.release("a")

    result = limiter.acquire_blocking("b", max_wait_s=10, clock=HookedClock(sleep), rng=random.Random(7))

    assert result.granted
    assert len(sleeps) == 2
    assert all(1.0 <= s <= 1.1 for s in sleeps)  # the 1 s poll cap plus up to 10 % jitter
    assert len(set(sleeps)) == 2


def test_acquire_blocking_gives_up_after_max_wait(limiter: FleetLimiter) -> None:
    limiter.set_config(concurrency=1)
    limiter.try_acquire("a")
    sleeps: list[float] = []

    result = limiter.acquire_blocking("b", max_wait_s=2.5, clock=HookedClock(sleeps.append), rng=random.Random(1))

    assert (result.granted, result.reason) == (False, "concurrency")
    assert sum(sleeps) == pytest.approx(2.5)
    assert len(sleeps) == 3


def test_acquire_blocking_sleeps_a_rate_wait_exactly_without_jitter(limiter: FleetLimiter) -> None:
    # Given rpm=120 (one admission every 0.5 s) and one admission just made
    limiter.set_config(rpm=120)
    limiter.try_acquire("a")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        limiter.r.delete(limiter.tat_requests_key)  # the next admission time has come

    # When another caller waits for the next admission
    result = limiter.acquire_blocking("b", max_wait_s=2, clock=HookedClock(sleep), rng=random.Random(3))

    # Then it slept the script's wait to the millisecond (no jitter: late wake-ups leave quota unused)
    assert result.granted
    assert len(sleeps) == 1 and 0.49 < sleeps[0] <= 0.5


def test_acquire_blocking_returns_at_once_when_the_wait_outlasts_the_budget(limiter: FleetLimiter) -> None:
    limiter.set_config(rpm=6)  # next request in 10 s
    limiter.try_acquire("a")
    sleeps: list[float] = []

    result = limiter.acquire_blocking("b", max_wait_s=2, clock=HookedClock(sleeps.append))

    assert (result.granted, result.reason) == (False, "rpm")
    assert result.wait_s > 9.9  # the caller re-queues with this countdown
    assert sleeps == []


# -- under contention ---------------------------------------------------------------------------------
def test_hammer_never_exceeds_the_concurrency_cap(limiter: FleetLimiter) -> None:
    limiter.set_config(concurrency=3)
    lock = threading.Lock()
    holding = 0
    max_seen = 0
    grants = 0
    stop_at = time.monotonic() + 1.0

    def worker(n: int) -> None:
        nonlocal holding, max_seen, grants
        attempt = 0
        while time.monotonic() < stop_at:
            attempt += 1
            holder = f"w{n}-{attempt}"
            if not limiter.try_acquire(holder).granted:
                time.sleep(0.001)
                continue
            with lock:  # counted after the grant and uncounted before the release: never above real leases
                holding += 1
                grants += 1
                max_seen = max(max_seen, holding)
            time.sleep(0.005)
            with lock:
                holding -= 1
            limiter.release(holder)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert max_seen == 3
    assert grants > 20
    assert limiter.in_flight() == 0


def test_rpm_holds_in_every_sliding_window_under_contention(limiter: FleetLimiter,
                                                            redis_db: redis.Redis) -> None:
    limiter.set_config(rpm=600, concurrency=10_000, lease_s=60)  # T = 0.1 s; only the rate binds
    stop_at = time.monotonic() + 2.0
    client_times: list[float] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        attempt = 0
        while time.monotonic() < stop_at:
            attempt += 1
            result = limiter.try_acquire(f"w{n}-{attempt}")
            if result.granted:
                with lock:
                    client_times.append(time.time())
            else:
                time.sleep(min(result.wait_s, 0.01))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Admission times in Redis's own clock: leases are never released here, so expiry - lease_s is the
    # instant the script admitted each one (client-side time.time() would add thread-scheduling jitter).
    rows = cast("list[tuple[str, float]]", redis_db.zrange(limiter.leases_key, 0, -1, withscores=True))
    admitted = sorted(score - 60 for _, score in rows)
    assert len(admitted) == len(client_times)
    assert 15 <= len(admitted) <= 21  # ~2 s at 10/s: the hammer really saturated the limit
    # Zero burst tolerance spaces admissions >= T = 0.1 s apart, so a closed 1 s window [a, a + 1] holds at
    # most 1 / T + 1 = 11: the +1 is the admission exactly on the far boundary (10 gaps of 0.1 s span 1 s).
    worst = max(sum(1 for b in admitted[i:] if b - a <= 1.0) for i, a in enumerate(admitted))
    assert worst <= 11
    assert min(b - a for a, b in itertools.pairwise(admitted)) >= 0.1 - 1e-6
