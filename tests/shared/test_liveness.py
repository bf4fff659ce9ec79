"""Worker and beat liveness: one rule (younger than 3 heartbeat intervals), the keys, pruning and clean removal."""

from __future__ import annotations

import fakeredis
import pytest

from shared.clock import FakeClock
from shared.liveness import WorkerRegistry


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000)


@pytest.fixture
def registry(clock: FakeClock) -> WorkerRegistry:
    return WorkerRegistry(fakeredis.FakeRedis(decode_responses=True), "t", clock, heartbeat_s=10)


def test_the_key_layout_is_what_readers_and_writers_share(registry: WorkerRegistry) -> None:
    assert registry.key("generate") == "t:workers:generate"
    assert registry.beat_key == "t:beat:heartbeat"


def test_a_worker_is_live_for_three_intervals_after_its_last_heartbeat(registry: WorkerRegistry,
                                                                      clock: FakeClock) -> None:
    registry.record_worker("gen@h", ["generate", "maintenance"])
    clock.advance(29)
    assert registry.live_workers("generate") == ["gen@h"]
    assert registry.live_counts(["generate", "preprocess", "maintenance"]) == {
        "generate": 1, "preprocess": 0, "maintenance": 1}
    clock.advance(2)
    assert registry.live_counts(["generate"]) == {"generate": 0}


def test_shutdown_removes_a_worker_at_once_and_old_entries_are_pruned(registry: WorkerRegistry,
                                                                     clock: FakeClock) -> None:
    registry.record_worker("old@h", ["generate"])
    clock.advance(3601)
    registry.record_worker("gen@h", ["generate"])
    assert registry.r.zrange(registry.key("generate"), 0, -1) == ["gen@h"]  # the hour-old entry is gone
    registry.remove_worker("gen@h", ["generate", "preprocess"])
    assert registry.live_workers("generate") == []


def test_beat_is_alive_within_max_of_a_minute_and_three_intervals(registry: WorkerRegistry,
                                                                  clock: FakeClock) -> None:
    assert registry.beat_age_s() is None and not registry.beat_alive(None)
    registry.record_beat()
    clock.advance(60)
    age = registry.beat_age_s()
    assert age == pytest.approx(60) and registry.beat_alive(age)
    clock.advance(1)
    assert not registry.beat_alive(registry.beat_age_s())
