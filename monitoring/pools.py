"""Worker pools: what each Celery worker instance runs (queues, pool type, slots, busy work) and resizing them.

Owns the operator's view of the worker fleet per queue (`FleetPools.view`), the one rule that spreads a resize
over the instances consuming a queue (`spread`), the bounds of a resize, and which limit binds for the generate
queue (pool slots against the fleet limiter's concurrency cap, `binding`). It reads the instances through
Celery's remote control (`inspect().stats/active/reserved/active_queues`, the pidbox broadcast the workers keep on
even with `--without-mingle --without-gossip`) and resizes with `pool_grow` / `pool_shrink`; both go through the
`PoolControl` port so tests can script the replies (`ScriptedControl`). Every broadcast has a bounded timeout, so a
dead or stuck instance costs at most that long and never hangs a request. Heartbeat times come from
`shared.liveness.WorkerRegistry`, which owns those keys.

A resize lives only as long as the worker process: a restart starts the pool at its Procfile/env concurrency
again. Only pools with `grow`/`shrink` can resize (celery/concurrency: prefork through billiard, gevent,
eventlet); the threads and solo pools cannot and are refused (`pool_not_resizable`).

Hand-written rather than Flower: Flower is a whole web server of its own with its own auth; we need four
read-only inspect calls and two control commands behind our admin token and error table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from celery import Celery

from shared.clock import Clock, rfc3339
from shared.errors import ClientInputError, Conflict
from shared.liveness import WorkerRegistry
from shared.queueing import ALL_QUEUES, GENERATE_QUEUE

INSPECT_TIMEOUT_S = 2.0  # per broadcast; a dead instance costs at most this, never a hung request
MAX_DELTA = 32  # per request: a typo cannot fork thousands of processes
MIN_SLOTS = 1  # an instance never shrinks below one process
MAX_SLOTS = 64  # nor grows beyond this by default (NANOEDIT_POOL_MAX_PROCESSES; run another instance instead)
RESIZABLE_POOLS = frozenset({"prefork", "gevent", "eventlet"})  # the pools with grow()/shrink()
NOT_PERSISTED = ("Run-time only: a restarted worker starts at its Procfile/env concurrency again "
                 "(NANOEDIT_*_CONCURRENCY).")


# -- records -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WorkerInstance:
    """One Celery worker instance (a main process with its pool), as its remote control answered."""

    name: str  # Celery node name, e.g. generate-1234@host
    host: str
    pid: int | None
    queues: tuple[str, ...]
    pool: str  # prefork, threads, solo, gevent, eventlet
    concurrency: int  # slots now: processes of a prefork pool, the thread limit of a threads pool
    concurrency_at_start: int  # the -c it started with (Celery's max-concurrency; a resize does not change it)
    started: int | None  # processes (prefork) or threads (threads: started on demand) running now
    active: int
    reserved: int
    processed: int  # tasks this instance finished since it started (stats()["total"], all task names)
    last_heartbeat: float | None  # epoch seconds, from our WorkerRegistry; None if it never wrote one

    @property
    def resizable(self) -> bool:
        return self.pool in RESIZABLE_POOLS

    def to_json(self, now: float) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "pid": self.pid, "queues": list(self.queues),
                "pool": self.pool, "resizable": self.resizable, "concurrency": self.concurrency,
                "concurrency_at_start": self.concurrency_at_start, "started": self.started,
                "active": self.active, "reserved": self.reserved, "processed": self.processed,
                "last_heartbeat_at": rfc3339(self.last_heartbeat),
                "heartbeat_age_s": None if self.last_heartbeat is None
                else round(max(0.0, now - self.last_heartbeat), 3)}


@dataclass(frozen=True, slots=True)
class FleetCap:
    """The generate queue's two ceilings side by side: pool slots and the limiter's concurrency."""

    slots: int
    cap: int
    binds: str  # "fleet_cap", "pool" or "both"
    note: str

    def to_json(self) -> dict[str, Any]:
        return {"concurrency": self.cap, "pool_slots": self.slots, "binds": self.binds, "note": self.note}


@dataclass(frozen=True, slots=True)
class QueuePool:
    queue: str
    instances: tuple[WorkerInstance, ...]
    live_heartbeats: int  # instances our registry calls live (an instance may be live but slow to answer)

    @property
    def slots(self) -> int:
        return sum(i.concurrency for i in self.instances)

    def to_json(self, now: float) -> dict[str, Any]:
        return {"instances": [i.to_json(now) for i in self.instances], "slots": self.slots,
                "active": sum(i.active for i in self.instances),
                "reserved": sum(i.reserved for i in self.instances),
                "live_heartbeats": self.live_heartbeats,
                "resizable": bool(self.instances) and all(i.resizable for i in self.instances)}


@dataclass(frozen=True, slots=True)
class FleetView:
    queues: tuple[QueuePool, ...]
    fleet_cap: FleetCap
    generated_at: float
    answered: int  # instances that answered the remote control

    def pool(self, queue: str) -> QueuePool:
        return next(p for p in self.queues if p.queue == queue)

    def to_json(self) -> dict[str, Any]:
        return {"generated_at": rfc3339(self.generated_at), "inspect_timeout_s": INSPECT_TIMEOUT_S,
                "queues": {p.queue: p.to_json(self.generated_at) for p in self.queues},
                "fleet_cap": {"queue": GENERATE_QUEUE, **self.fleet_cap.to_json()},
                "note": NOT_PERSISTED}


@dataclass(frozen=True, slots=True)
class InstanceChange:
    name: str
    before: int
    requested: int  # the signed change sent to this instance
    ok: bool
    reply: str  # the worker's answer, or why there was none

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "before": self.before, "requested": self.requested,
                "after": self.before + self.requested if self.ok else self.before, "ok": self.ok,
                "reply": self.reply}


@dataclass(frozen=True, slots=True)
class ScaleResult:
    queue: str
    delta: int
    changes: tuple[InstanceChange, ...]

    @property
    def applied(self) -> int:
        return sum(c.requested for c in self.changes if c.ok)

    def to_json(self) -> dict[str, Any]:
        before = sum(c.before for c in self.changes)
        return {"queue": self.queue, "delta": self.delta, "applied": self.applied, "slots_before": before,
                "slots_after": before + self.applied, "instances": [c.to_json() for c in self.changes],
                "note": NOT_PERSISTED}


# -- pure rules ----------------------------------------------------------------------------------------------------

def check_request(queue: object, delta: object) -> tuple[str, int]:
    """The queue and delta of a scale request, or the coded error (422) saying what is wrong."""
    if not isinstance(queue, str) or queue not in ALL_QUEUES:
        raise ClientInputError(f"unknown queue {str(queue)[:40]!r}", code="unknown_queue",
                               suggestion=f"Use one of: {', '.join(ALL_QUEUES)}.")
    if isinstance(delta, float) and delta.is_integer() and abs(delta) <= MAX_DELTA:
        delta = int(delta)  # JSON Schema's integer: 2.0 is one
    if isinstance(delta, bool) or not isinstance(delta, int) or not 1 <= abs(delta) <= MAX_DELTA:
        raise ClientInputError(f"delta must be a whole number from -{MAX_DELTA} to {MAX_DELTA}, not 0",
                               code="invalid_scale")
    return queue, delta


def spread(slots: Mapping[str, int], delta: int, *, floor: int = MIN_SLOTS, ceiling: int = MAX_SLOTS) -> dict[str, int]:
    """How much each instance changes so the total changes by `delta`: one slot at a time to the instance with
    the fewest slots (growing) or the most (shrinking), ties by name, never below `floor` or above `ceiling`.
    Raises `pool_limit` (409) when the bounds leave no room for the whole delta: nothing is half-applied."""
    now = dict(slots)
    step = 1 if delta > 0 else -1
    for _ in range(abs(delta)):
        if step > 0:
            candidates = [n for n, s in now.items() if s + 1 <= ceiling]
        else:
            candidates = [n for n, s in now.items() if s - 1 >= floor]
        room = sorted(candidates, key=lambda n: (now[n] * step, n))
        if not room:
            limit = (f"at least {floor} per instance" if step < 0 else f"at most {ceiling} per instance")
            raise Conflict(f"{len(now)} instance(s) with {sum(slots.values())} slot(s) cannot change by {delta}: "
                           f"{limit}", code="pool_limit",
                           suggestion=f"Every instance keeps {floor} to {ceiling} processes "
                                      "(NANOEDIT_POOL_MAX_PROCESSES): change by less, or start or stop an instance "
                                      "instead.")
        now[room[0]] += step
    return {n: now[n] - slots[n] for n in sorted(now) if now[n] != slots[n]}


def binding(slots: int, cap: int) -> FleetCap:
    """Which ceiling limits provider calls in flight: the generate pool's slots or the fleet limiter's cap."""
    if slots > cap:
        return FleetCap(slots, cap, "fleet_cap", f"pool slots {slots} > fleet cap {cap}: the cap binds; grow the "
                                                 f"cap (nanoedit limits --concurrency), not the pool")
    if slots < cap:
        return FleetCap(slots, cap, "pool", f"pool slots {slots} < fleet cap {cap}: the pool binds; grow the pool "
                                            f"(nanoedit scale generate +N) or start another instance")
    return FleetCap(slots, cap, "both", f"pool slots {slots} = fleet cap {cap}: both bind; grow both to run more "
                                        f"calls at once")


def pool_kind(stats: Mapping[str, Any]) -> str:
    """`celery.concurrency.prefork:TaskPool` → `prefork`, `...thread:TaskPool` → `threads` (the -P names)."""
    impl = str((stats.get("pool") or {}).get("implementation") or "")
    module = impl.partition(":")[0].rpartition(".")[2] or "unknown"
    return {"thread": "threads"}.get(module, module)


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def instance_from_replies(name: str, stats: Mapping[str, Any], active: Sequence[Any], reserved: Sequence[Any],
                          queues: Sequence[Any], last_heartbeat: float | None) -> WorkerInstance:
    """One instance from its remote-control replies (the shapes celery/worker/control.py sends)."""
    pool = stats.get("pool") or {}
    kind = pool_kind(stats)
    at_start = _int(pool.get("max-concurrency"), 1)
    procs = pool.get("processes")
    started = len(procs) if isinstance(procs, list) else _int(pool.get("threads"), -1)
    concurrency = started if kind == "prefork" and started >= 0 else at_start
    total = stats.get("total") or {}
    return WorkerInstance(
        name=name, host=name.partition("@")[2] or name, pid=_int(stats.get("pid"), -1) if "pid" in stats else None,
        queues=tuple(str(q.get("name")) for q in queues if isinstance(q, Mapping)), pool=kind,
        concurrency=concurrency, concurrency_at_start=at_start, started=started if started >= 0 else None,
        active=len(active), reserved=len(reserved),
        processed=sum(_int(v) for v in total.values()) if isinstance(total, Mapping) else 0,
        last_heartbeat=last_heartbeat)


# -- the port and its implementations ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Replies:
    """What the instances answered, by node name (an instance missing from `stats` did not answer)."""

    stats: dict[str, dict[str, Any]]
    active: dict[str, list[Any]]
    reserved: dict[str, list[Any]]
    active_queues: dict[str, list[Any]]


class PoolControl(Protocol):
    """Celery's remote control, as much as the pools need. `expected` is how many instances should answer (the
    live heartbeats): the broadcast returns as soon as that many did, else after its timeout."""

    def inspect(self, expected: int) -> Replies: ...

    def resize(self, names: Sequence[str], n: int) -> dict[str, dict[str, Any]]:
        """`pool_grow` (n > 0) or `pool_shrink` (n < 0) by |n| on each named instance; their replies by name."""
        ...


class CeleryControl:
    """`PoolControl` over a Celery app's broadcast mailbox, each call bounded by `timeout_s`."""

    def __init__(self, app: Celery, timeout_s: float = INSPECT_TIMEOUT_S) -> None:
        self.app = app
        self.timeout_s = timeout_s

    def inspect(self, expected: int) -> Replies:
        ask = self.app.control.inspect(timeout=self.timeout_s, limit=expected or None)
        stats = ask.stats() or {}
        names = sorted(stats)
        if not names:
            return Replies({}, {}, {}, {})
        # Ask only the instances that answered, and stop waiting once they all did.
        ask = self.app.control.inspect(destination=names, timeout=self.timeout_s, limit=len(names))
        return Replies(stats, ask.active() or {}, ask.reserved() or {}, ask.active_queues() or {})

    def resize(self, names: Sequence[str], n: int) -> dict[str, dict[str, Any]]:
        command = self.app.control.pool_grow if n > 0 else self.app.control.pool_shrink
        replies = command(abs(n), destination=list(names), reply=True, timeout=self.timeout_s,
                          limit=len(names)) or []
        return {name: dict(body) for reply in replies for name, body in reply.items()}


@dataclass
class ScriptedControl:
    """The in-package stub of `PoolControl` for tests: answers `replies`; `resize` applies the change to the
    stats it holds (prefork pools only, like Celery) and records every call in `resized`."""

    replies: Replies = field(default_factory=lambda: Replies({}, {}, {}, {}))
    resized: list[tuple[tuple[str, ...], int]] = field(default_factory=list)
    refuse: Callable[[str, int], str | None] = lambda _name, _n: None

    def inspect(self, expected: int) -> Replies:
        return self.replies

    def resize(self, names: Sequence[str], n: int) -> dict[str, dict[str, Any]]:
        self.resized.append((tuple(names), n))
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            pool = self.replies.stats[name]["pool"]
            error = self.refuse(name, n)
            if error:
                out[name] = {"error": error}
            elif "processes" in pool:
                pids = pool["processes"]
                pool["processes"] = pids + [max(pids, default=1000) + i + 1 for i in range(n)] if n > 0 \
                    else pids[:n]
                out[name] = {"ok": "pool will grow" if n > 0 else "pool will shrink"}
            else:
                out[name] = {"error": "AttributeError(\"'TaskPool' object has no attribute 'grow'\")"}
        return out


# -- the service ---------------------------------------------------------------------------------------------------

class FleetPools:
    """The pools of every queue, read and resized through `control`; heartbeats and time from `registry`."""

    def __init__(self, control: PoolControl, registry: WorkerRegistry, clock: Clock,
                 max_processes: int = MAX_SLOTS) -> None:
        self.control = control
        self.registry = registry
        self.clock = clock
        self.max_processes = max_processes

    def view(self, fleet_concurrency: int) -> FleetView:
        beats = self.registry.last_heartbeats(ALL_QUEUES)
        live = self.registry.live_counts(ALL_QUEUES)
        since = self.clock.now() - self.registry.live_window_s
        replies = self.control.inspect(expected=sum(1 for at in beats.values() if at >= since))
        instances = [instance_from_replies(name, replies.stats[name], replies.active.get(name) or [],
                                           replies.reserved.get(name) or [], replies.active_queues.get(name) or [],
                                           beats.get(name))
                     for name in sorted(replies.stats)]
        pools = tuple(QueuePool(q, tuple(i for i in instances if q in i.queues), live.get(q, 0))
                      for q in ALL_QUEUES)
        slots = next(p.slots for p in pools if p.queue == GENERATE_QUEUE)
        return FleetView(pools, binding(slots, fleet_concurrency), self.clock.now(), len(instances))

    def scale(self, queue: object, delta: object, fleet_concurrency: int) -> ScaleResult:
        """Grow or shrink `queue`'s pools by `delta` slots in total, spread over the instances consuming it."""
        name, change = check_request(queue, delta)
        pool = self.view(fleet_concurrency).pool(name)
        if not pool.instances:
            raise Conflict(f"no worker instance consuming {name!r} answered within {INSPECT_TIMEOUT_S:g} s",
                           code="no_live_workers")
        fixed = sorted({i.pool for i in pool.instances if not i.resizable})
        if fixed:
            raise Conflict(f"queue {name!r} runs a {', '.join(fixed)} pool, which cannot grow or shrink at run time",
                           code="pool_not_resizable")
        before = {i.name: i.concurrency for i in pool.instances}
        plan = spread(before, change, ceiling=self.max_processes)
        by_step: dict[int, list[str]] = {}
        for instance, step in plan.items():
            by_step.setdefault(step, []).append(instance)
        changes: list[InstanceChange] = []
        for step, names in sorted(by_step.items()):
            replies = self.control.resize(names, step)
            for instance in names:
                reply = replies.get(instance)
                ok = reply is not None and "ok" in reply
                text = str(reply.get("ok") if ok else reply.get("error")) if reply is not None \
                    else f"no reply within {INSPECT_TIMEOUT_S:g} s"
                changes.append(InstanceChange(instance, before[instance], step, ok, text[:200]))
        return ScaleResult(name, change, tuple(sorted(changes, key=lambda c: c.name)))
