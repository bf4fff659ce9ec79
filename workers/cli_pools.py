"""`nanoedit workers` and `nanoedit scale QUEUE +N|-N`: the worker pools of the fleet, read and resized through the
API's operator routes (GET /v1/admin/workers, POST /v1/admin/workers/scale; the rules are monitoring/pools.py).

Registered by workers/cli.py, which owns the client and turns API errors into messages and exit codes. This
module gets the client as a `PoolsClient` (only `shared.client` may be imported by the CLI entry point itself).
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any, Protocol

EXIT_OK = 0
EXIT_PARTIAL = 1  # some instance did not apply its part of a resize
EXIT_ERROR = 2
COMMANDS = ("workers", "scale")
_DELTA = re.compile(r"^[+-]?\d{1,4}$")
_COLUMNS = ("QUEUE", "INSTANCE", "HOST", "PID", "POOL", "SLOTS", "ACTIVE", "RESERVED", "PROCESSED", "HEARTBEAT")


class PoolsClient(Protocol):
    def workers(self) -> dict[str, Any]: ...

    def scale(self, queue: str, delta: int) -> dict[str, Any]: ...


def delta_arg(text: str) -> int:
    """`+2`, `2` or `-2` (argparse treats `-2` as a positional because no option looks like a number)."""
    if not _DELTA.match(text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r}: give a signed whole number, e.g. +2 or -1")
    return int(text.strip())


def add_parsers(sub: Any) -> None:
    """The two commands, on workers/cli.py's subparsers."""
    w = sub.add_parser("workers", help="worker instances per queue: pool, slots, active, reserved (operators)")
    w.add_argument("--json", action="store_true", help="the API's JSON instead of a table")
    s = sub.add_parser("scale", help="grow or shrink a queue's worker pools at run time: scale generate +2 "
                                     "(operators; not kept across a worker restart)")
    s.add_argument("queue", metavar="QUEUE", help="preprocess, generate, maintenance or webhooks")
    s.add_argument("delta", type=delta_arg, metavar="+N|-N", help="slots to add or remove, spread over instances")
    s.add_argument("--json", action="store_true", help="the API's JSON reply")


def _age(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    return f"{seconds / 60:.0f}m ago" if seconds < 7200 else f"{seconds / 3600:.0f}h ago"


def _slots(instance: dict[str, Any]) -> str:
    now, at_start = instance.get("concurrency"), instance.get("concurrency_at_start")
    return f"{now} (started {at_start})" if now != at_start else str(now)


def table(view: dict[str, Any]) -> str:
    """The readable form of GET /v1/admin/workers: one row per instance and queue, totals, then the fleet cap."""
    rows: list[tuple[str, ...]] = [_COLUMNS]
    totals: list[str] = []
    for queue, pool in view.get("queues", {}).items():
        instances = pool.get("instances", [])
        if not instances:
            rows.append((queue, "-", "-", "-", "-", "0", "0", "0", "-", "no instance answered"))
        for i in instances:
            rows.append((queue, str(i.get("name")), str(i.get("host")), str(i.get("pid")), str(i.get("pool")),
                         _slots(i), str(i.get("active")), str(i.get("reserved")), str(i.get("processed")),
                         _age(i.get("heartbeat_age_s"))))
        totals.append(f"{queue}: {len(instances)} instance(s), {pool.get('slots', 0)} slot(s), "
                      f"{pool.get('active', 0)} active, {pool.get('reserved', 0)} reserved"
                      + ("" if pool.get("resizable", True) or not instances else " (fixed-size pool)"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    cap = view.get("fleet_cap") or {}
    lines += ["", *totals]
    if cap:
        lines.append(f"fleet cap (generate): {cap.get('note')}")
    if view.get("note"):
        lines.append(str(view["note"]))
    return "\n".join(lines)


def scale_summary(result: dict[str, Any]) -> str:
    lines = [f"{result.get('queue')}: {result.get('slots_before')} → {result.get('slots_after')} slot(s) "
             f"(asked {int(result.get('delta', 0)):+d}, applied {int(result.get('applied', 0)):+d})"]
    for c in result.get("instances", []):
        mark = "ok" if c.get("ok") else "FAILED"
        lines.append(f"  {c.get('name')}: {c.get('before')} → {c.get('after')} ({int(c.get('requested', 0)):+d}, "
                     f"{mark}: {c.get('reply')})")
    if result.get("note"):
        lines.append(str(result["note"]))
    return "\n".join(lines)


def run(client: PoolsClient, args: argparse.Namespace) -> int:
    """Run `workers` or `scale`; API errors propagate to workers/cli.py's handler."""
    if args.command == "workers":
        view = client.workers()
        print(json.dumps(view, indent=2, ensure_ascii=False) if args.json else table(view))
        return EXIT_OK
    result = client.scale(args.queue, args.delta)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else scale_summary(result))
    return EXIT_OK if result.get("applied") == result.get("delta") else EXIT_PARTIAL
