"""Worker pools without workers: spreading a delta, which ceiling binds, reading Celery's replies, and the
`FleetPools` service over the scripted remote control (fakeredis heartbeats, fake clock)."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from monitoring.pools import FleetPools, Replies, ScriptedControl, binding, instance_from_replies, spread
from shared.clock import FakeClock
from shared.errors import NanoeditError
from shared.liveness import WorkerRegistry

NOW = 1_700_000_000.0


def prefork(pid: int, n: int, *, at_start: int | None = None) -> dict[str, Any]:
    return {"pid": pid, "total": {"nanoedit.generate": 5, "nanoedit.pump": 2},
            "pool": {"implementation": "celery.concurrency.prefork:TaskPool", "max-concurrency": at_start or n,
                     "processes": [pid + 1 + i for i in range(n)]}}


def threads(pid: int, n: int) -> dict[str, Any]:
    return {"pid": pid, "total": {}, "pool": {"implementation": "celery.concurrency.thread:TaskPool",
                                              "max-concurrency": n, "threads": 1}}


def fleet(**stats: tuple[dict[str, Any], list[str]]) -> tuple[FleetPools, ScriptedControl, WorkerRegistry]:
    """FleetPools over instances name → (stats reply, queues), each with a heartbeat 2 s old."""
    clock = FakeClock(NOW - 2)
    registry = WorkerRegistry(fakeredis.FakeRedis(decode_responses=True), "t", clock, heartbeat_s=5)
    replies = Replies({n: s for n, (s, _) in stats.items()}, {n: [] for n in stats}, {n: [] for n in stats},
                      {n: [{"name": q} for q in qs] for n, (_, qs) in stats.items()})
    for name, (_, queues) in stats.items():
        registry.record_worker(name, queues)
    clock.advance(2)
    control = ScriptedControl(replies)
    return FleetPools(control, registry, clock), control, registry


# -- spread ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("slots", "delta", "expected"), [
    ({"a": 1, "b": 1}, 2, {"a": 1, "b": 1}),  # even growth
    ({"a": 3, "b": 1}, 2, {"b": 2}),  # the smaller pool catches up first
    ({"a": 2, "b": 2}, 3, {"a": 2, "b": 1}),  # ties go by name
    ({"a": 4, "b": 1}, -2, {"a": -2}),  # the bigger pool shrinks first
    ({"a": 2, "b": 2}, -2, {"a": -1, "b": -1}),
    ({"a": 3}, -2, {"a": -2}),
])
def test_spread_moves_one_slot_at_a_time_to_the_fairest_instance(slots: dict[str, int], delta: int,
                                                                  expected: dict[str, int]) -> None:
    plan = spread(slots, delta)

    assert plan == expected
    assert sum(plan.values()) == delta


@pytest.mark.parametrize(("slots", "delta"), [({"a": 1, "b": 2}, -2), ({"a": 1}, -1), ({"a": 63}, 2)])
def test_spread_refuses_what_would_cross_a_bound(slots: dict[str, int], delta: int) -> None:
    with pytest.raises(NanoeditError) as caught:
        spread(slots, delta)

    assert caught.value.code == "pool_limit" and caught.value.status == 409


def test_binding_names_the_ceiling_that_limits_calls_in_flight() -> None:
    assert binding(6, 3).binds == "fleet_cap"
    assert binding(6, 3).note == ("pool slots 6 > fleet cap 3: the cap binds; grow the cap (nanoedit limits "
                                  "--concurrency), not the pool")
    assert binding(2, 8).binds == "pool" and "grow the pool" in binding(2, 8).note
    assert binding(4, 4).binds == "both"


# -- replies --------------------------------------------------------------------------------------------------------

def test_a_grown_prefork_pool_counts_its_processes_not_its_start_value() -> None:
    i = instance_from_replies("generate-7@h1", prefork(7, 3, at_start=1), [{}], [{}, {}], [{"name": "generate"}],
                              NOW - 4)

    assert (i.name, i.host, i.pid, i.pool, i.queues) == ("generate-7@h1", "h1", 7, "prefork", ("generate",))
    assert (i.concurrency, i.concurrency_at_start, i.started) == (3, 1, 3)
    assert (i.active, i.reserved, i.processed, i.resizable) == (1, 2, 7, True)
    assert i.to_json(NOW)["heartbeat_age_s"] == 4.0


def test_a_threads_pool_has_its_limit_as_slots_and_cannot_resize() -> None:
    i = instance_from_replies("webhooks-1@h", threads(1, 4), [], [], [{"name": "webhooks"}], None)

    assert (i.pool, i.concurrency, i.started, i.resizable) == ("threads", 4, 1, False)
    assert i.to_json(NOW)["last_heartbeat_at"] is None


# -- the service ----------------------------------------------------------------------------------------------------

def test_view_groups_instances_by_queue_with_totals_and_heartbeats() -> None:
    pools, _, _ = fleet(**{"gen-1@h": (prefork(10, 2), ["generate"]), "gen-2@h": (prefork(20, 1), ["generate"]),
                           "pre-1@h": (prefork(30, 1), ["preprocess", "maintenance"])})

    view = pools.view(fleet_concurrency=2).to_json()

    generate = view["queues"]["generate"]
    assert [i["name"] for i in generate["instances"]] == ["gen-1@h", "gen-2@h"]
    assert (generate["slots"], generate["live_heartbeats"], generate["resizable"]) == (3, 2, True)
    assert generate["instances"][0]["heartbeat_age_s"] == 2.0
    assert [i["name"] for i in view["queues"]["maintenance"]["instances"]] == ["pre-1@h"]
    assert view["queues"]["webhooks"] == {"instances": [], "slots": 0, "active": 0, "reserved": 0,
                                          "live_heartbeats": 0, "resizable": False}
    assert view["fleet_cap"] == {"queue": "generate", "concurrency": 2, "pool_slots": 3, "binds": "fleet_cap",
                                 "note": binding(3, 2).note}


def test_scale_spreads_the_delta_and_reports_each_instance() -> None:
    pools, control, _ = fleet(**{"gen-1@h": (prefork(10, 2), ["generate"]),
                                 "gen-2@h": (prefork(20, 1), ["generate"])})

    result = pools.scale("generate", 3, fleet_concurrency=8).to_json()

    assert control.resized == [(("gen-1@h",), 1), (("gen-2@h",), 2)]  # grouped by step, smallest step first
    assert (result["slots_before"], result["slots_after"], result["applied"]) == (3, 6, 3)
    assert [(c["name"], c["before"], c["after"], c["ok"]) for c in result["instances"]] == [
        ("gen-1@h", 2, 3, True), ("gen-2@h", 1, 3, True)]
    assert pools.view(8).pool("generate").slots == 6


def test_an_instance_that_refuses_is_reported_not_counted() -> None:
    pools, control, _ = fleet(**{"gen-1@h": (prefork(10, 2), ["generate"]),
                                 "gen-2@h": (prefork(20, 2), ["generate"])})
    control.refuse = lambda name, _n: "ValueError(\"Can't shrink pool. All processes busy!\")" \
        if name == "gen-2@h" else None

    result = pools.scale("generate", -2, fleet_concurrency=8).to_json()

    assert result["applied"] == -1 and result["slots_after"] == 3
    failed = [c for c in result["instances"] if not c["ok"]]
    assert [(c["name"], c["after"]) for c in failed] == [("gen-2@h", 2)] and "busy" in failed[0]["reply"]


@pytest.mark.parametrize(("queue", "delta", "code", "status"), [
    ("nosuch", 1, "unknown_queue", 422), (None, 1, "unknown_queue", 422),
    ("generate", 0, "invalid_scale", 422), ("generate", 33, "invalid_scale", 422),
    ("generate", -33, "invalid_scale", 422), ("generate", True, "invalid_scale", 422),
    ("generate", "2", "invalid_scale", 422), ("generate", 1.5, "invalid_scale", 422),
    ("preprocess", 1, "no_live_workers", 409), ("webhooks", 1, "pool_not_resizable", 409),
    ("generate", -1, "pool_limit", 409),
])
def test_scale_refusals_are_coded(queue: object, delta: object, code: str, status: int) -> None:
    pools, control, _ = fleet(**{"gen-1@h": (prefork(10, 1), ["generate"]),
                                 "hooks-1@h": (threads(20, 4), ["webhooks"])})

    with pytest.raises(NanoeditError) as caught:
        pools.scale(queue, delta, fleet_concurrency=3)

    assert (caught.value.code, caught.value.status) == (code, status)
    assert caught.value.suggestion
    assert control.resized == []
