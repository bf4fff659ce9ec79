"""`nanoedit workers` / `nanoedit scale` without a server: argument parsing (a negative delta is not an option),
the table, the scale summary and exit codes, over a stub client."""

from __future__ import annotations

from typing import Any

import pytest

from workers.cli import _parser
from workers.cli_pools import EXIT_OK, EXIT_PARTIAL, run, scale_summary, table

VIEW: dict[str, Any] = {
    "queues": {
        "generate": {"instances": [
            {"name": "generate-41@box", "host": "box", "pid": 41, "pool": "prefork", "concurrency": 3,
             "concurrency_at_start": 1, "active": 2, "reserved": 1, "processed": 17, "heartbeat_age_s": 1.4},
            {"name": "generate-52@box", "host": "box", "pid": 52, "pool": "prefork", "concurrency": 1,
             "concurrency_at_start": 1, "active": 0, "reserved": 0, "processed": 0, "heartbeat_age_s": None}],
            "slots": 4, "active": 2, "reserved": 1, "resizable": True},
        "webhooks": {"instances": [], "slots": 0, "active": 0, "reserved": 0, "resizable": False},
    },
    "fleet_cap": {"queue": "generate", "concurrency": 3, "pool_slots": 4, "binds": "fleet_cap",
                  "note": "pool slots 4 > fleet cap 3: the cap binds"},
    "note": "Run-time only.",
}


class StubClient:
    def __init__(self, applied: int) -> None:
        self.applied = applied
        self.calls: list[tuple[str, int]] = []

    def workers(self) -> dict[str, Any]:
        return VIEW

    def scale(self, queue: str, delta: int) -> dict[str, Any]:
        self.calls.append((queue, delta))
        return {"queue": queue, "delta": delta, "applied": self.applied, "slots_before": 4,
                "slots_after": 4 + self.applied, "note": "Run-time only.",
                "instances": [{"name": "generate-41@box", "before": 3, "requested": delta,
                               "after": 3 + self.applied, "ok": self.applied == delta, "reply": "pool will shrink"}]}


@pytest.mark.parametrize(("word", "delta"), [("+2", 2), ("-2", -2), ("3", 3)])
def test_scale_takes_a_signed_delta_even_a_negative_one(word: str, delta: int) -> None:
    args = _parser().parse_args(["--url", "http://x", "scale", "generate", word])

    assert (args.command, args.queue, args.delta) == ("scale", "generate", delta)


@pytest.mark.parametrize("word", ["two", "+", "1.5", "--2"])
def test_scale_refuses_a_delta_that_is_not_a_whole_number(word: str) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["scale", "generate", word])


def test_table_has_one_row_per_instance_totals_and_the_binding_note() -> None:
    lines = table(VIEW).splitlines()

    assert lines[0].split() == ["QUEUE", "INSTANCE", "HOST", "PID", "POOL", "SLOTS", "ACTIVE", "RESERVED",
                                "PROCESSED", "HEARTBEAT"]
    rows = {line.split()[1]: line for line in lines[1:4]}
    assert "3 (started 1)" in rows["generate-41@box"] and rows["generate-41@box"].endswith("1s ago")
    assert rows["generate-52@box"].endswith("never")
    assert lines[3].startswith("webhooks") and lines[3].endswith("no instance answered")
    assert "generate: 2 instance(s), 4 slot(s), 2 active, 1 reserved" in lines
    assert "fleet cap (generate): pool slots 4 > fleet cap 3: the cap binds" in lines


def test_scale_exit_code_says_whether_every_instance_applied(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["scale", "generate", "-1"])

    assert run(StubClient(applied=-1), args) == EXIT_OK
    assert capsys.readouterr().out.startswith("generate: 4 → 3 slot(s) (asked -1, applied -1)")
    assert run(StubClient(applied=0), args) == EXIT_PARTIAL
    assert "FAILED" in capsys.readouterr().out


def test_scale_summary_lists_each_instance() -> None:
    text = scale_summary(StubClient(applied=2).scale("generate", 2))

    assert "  generate-41@box: 3 → 5 (+2, ok: pool will shrink)" in text.splitlines()
