"""Worker pools end to end: `nanoedit workers` and `nanoedit scale` against a running stack (gunicorn API, two
gevent generate instances as in the Procfile, a preprocess instance, a threads-pool webhooks instance, real
redis-server), so the remote-control replies, the resize and the refusals are Celery's own.

The CLI runs in-process (`workers.cli.main`) against the real API over HTTP; waits poll `nanoedit workers --json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared.settings import Settings
from tests.support.stack import RedisServer, Stack, start_stack, wait_for
from workers.cli import main

pytestmark = pytest.mark.e2e

POOLS_DB = 26


@pytest.fixture(scope="module")
def pools_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(redis_server.url(POOLS_DB), tmp_path_factory.mktemp("pools"), preprocess=1, generate=(1, 1),
                    webhooks=2)
    try:
        s.wait_live(("preprocess", "generate", "maintenance", "webhooks"))
        yield s
    finally:
        s.stop()


def cli(stack: Stack, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--url", stack.url, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def pools(stack: Stack, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = cli(stack, capsys, "workers", "--json")
    assert code == 0, err
    return dict(json.loads(out))


def generate_slots(stack: Stack, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    return {i["name"]: i["concurrency"] for i in pools(stack, capsys)["queues"]["generate"]["instances"]}


def wait_generate_slots(stack: Stack, capsys: pytest.CaptureFixture[str], want: int) -> dict[str, int]:
    return dict(wait_for(lambda: (s := generate_slots(stack, capsys)) and set(s.values()) == {want} and s,
                         60, f"each generate instance at {want} process(es)", 0.5))


def test_workers_lists_every_queue_its_instances_and_the_fleet_cap(pools_stack: Stack,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Given the stack: two generate instances (-c 1), one preprocess (also maintenance), one webhooks (threads)
    # When the operator asks for the pools, as JSON and as a table
    view = wait_for(lambda: (v := pools(pools_stack, capsys)) and len(v["queues"]["generate"]["instances"]) == 2
                    and v["queues"]["webhooks"]["instances"] and v, 60, "all four instances to answer", 0.5)
    code, table, _ = cli(pools_stack, capsys, "workers")

    # Then each queue lists the instances consuming it, with their pool, slots and a recent heartbeat
    generate = view["queues"]["generate"]
    assert sorted(i["name"].split("@")[0] for i in generate["instances"]) == ["gen1", "gen2"]
    assert generate["slots"] == 2 and generate["resizable"] is True
    for instance in generate["instances"]:
        assert instance["pool"] == "gevent" and instance["concurrency"] == instance["concurrency_at_start"] == 1
        assert instance["pid"] > 0 and instance["queues"] == ["generate"] and instance["heartbeat_age_s"] < 30
        assert instance["active"] == 0 and instance["reserved"] == 0
    pre = view["queues"]["preprocess"]["instances"]
    assert len(pre) == 1 and set(pre[0]["queues"]) == {"preprocess", "maintenance"}
    assert view["queues"]["maintenance"]["instances"] == pre
    hooks = view["queues"]["webhooks"]
    assert [i["pool"] for i in hooks["instances"]] == ["threads"] and hooks["resizable"] is False
    assert hooks["slots"] == 2

    # And the generate pools sit beside the fleet cap, saying which one binds
    cap = Settings.from_env(pools_stack.env).limit_config().concurrency
    assert view["fleet_cap"]["concurrency"] == cap and view["fleet_cap"]["pool_slots"] == 2
    assert view["fleet_cap"]["binds"] == ("pool" if cap > 2 else "fleet_cap" if cap < 2 else "both")

    # And the table shows the same, one row per instance
    assert code == 0
    assert table.splitlines()[0].split() == ["QUEUE", "INSTANCE", "HOST", "PID", "POOL", "SLOTS", "ACTIVE",
                                             "RESERVED", "PROCESSED", "HEARTBEAT"]
    assert sum(1 for line in table.splitlines() if line.startswith("generate ")) == 2
    assert "generate: 2 instance(s), 2 slot(s)" in table and "fleet cap (generate): pool slots 2" in table


def test_scale_generate_up_then_down(pools_stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    # Given both generate instances at one process each
    before = wait_generate_slots(pools_stack, capsys, 1)

    # When the operator grows the generate pools by 2
    code, out, err = cli(pools_stack, capsys, "scale", "generate", "+2")

    # Then each instance was asked for one more process and the pools show 2 each
    assert code == 0, err
    assert "generate: 2 → 4 slot(s)" in out and out.count(": 1 → 2 (+1, ok") == 2
    grown = wait_generate_slots(pools_stack, capsys, 2)
    assert set(grown) == set(before)

    # When it shrinks them by 2 (a negative number, not an option)
    code, out, err = cli(pools_stack, capsys, "scale", "generate", "-2", "--json")

    # Then both are back to one process
    assert code == 0, err
    result = json.loads(out)
    assert (result["slots_before"], result["slots_after"], result["applied"]) == (4, 2, -2)
    assert wait_generate_slots(pools_stack, capsys, 1) == before


def test_refusals_come_with_code_and_suggestion(pools_stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    wait_generate_slots(pools_stack, capsys, 1)

    # A threads pool cannot resize
    code, _, err = cli(pools_stack, capsys, "scale", "webhooks", "+1")
    assert code == 2 and "(pool_not_resizable)" in err and "suggestion: " in err and "threads" in err

    # No instance goes below one process
    code, _, err = cli(pools_stack, capsys, "scale", "generate", "-1")
    assert code == 2 and "(pool_limit)" in err

    # An unknown queue and a delta out of range are the API's 422s
    code, _, err = cli(pools_stack, capsys, "scale", "nosuch", "+1")
    assert code == 2 and "(unknown_queue)" in err
    code, _, err = cli(pools_stack, capsys, "scale", "generate", "+33")
    assert code == 2 and "(invalid_scale)" in err

    # And nothing changed
    assert set(generate_slots(pools_stack, capsys).values()) == {1}
