"""Job change notifications: a small pub/sub message at every status or stage change, and the web process's one
listener that wakes the requests waiting on a job (`Prefer: wait`, `GET /v1/jobs/{id}/events`).

- **Publish.** Each successful status/stage compare-and-set publishes from inside its own script
  (`publish_change_lua`: the write and its message in one round trip, and no message for a write that did not
  happen), on one channel per deployment (`P:jobevents`, `shared.jobs.keys`), message `{"id", "status",
  "stage"}` (stage "" when the write did not set one). Pub/sub is fire-and-forget: a message published while
  nobody listens, or lost with a connection, is gone. Waiters therefore always re-read the job after a wake-up
  and also re-read it every `POLL_S` seconds, so a lost message only delays an answer, never loses it.
- **Listen.** `JobEvents.subscribe(job_id)` registers a `Subscription` (bounded by `max_waiters` per process) and
  starts, on first use, one listener thread (a greenlet under gunicorn's gevent worker, whose monkey patching
  makes `threading` cooperative) holding one Redis pub/sub connection: 1,000 waiters cost one connection, not
  1,000. The listener fans each message out to the subscriptions of that job id.

docs/architecture.md ("Redis key layout"), docs/api.md ("Waiting and streaming").
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from shared.clock import Clock
from shared.jobs.keys import JobKeys

log = logging.getLogger("nanoedit.jobs.events")

POLL_S = 5.0  # fallback re-read of a waited-on job (a pub/sub message can be lost)


EventArgs = tuple[str, str, str, str]  # job id, channel ("" = publish nothing), new status ("" = as it was), stage


def publish_change_lua(job_id: str, channel: str, status: str, stage: str) -> str:
    """Lua for a status script to publish the change it just made (`cur`: the status before): the message of
    `JobEvents.publish`, built from the script arguments named here (e.g. "ARGV[2]")."""
    return f"""
if {channel} ~= '' then
  local status = {status}
  if status == '' then status = cur end
  redis.call('PUBLISH', {channel}, cjson.encode({{id = {job_id}, status = status, stage = {stage}}}))
end
"""


@dataclass(frozen=True, slots=True)
class JobChange:
    job_id: str
    status: str
    stage: str  # "" when the write changed the status only


class Subscription:
    """The changes of one job seen by one waiting request, in publication order."""

    def __init__(self, owner: JobEvents, job_id: str) -> None:
        self.job_id = job_id
        self._owner = owner
        self._changes: deque[JobChange] = deque(maxlen=256)
        self._event = threading.Event()

    def _push(self, change: JobChange | None) -> None:
        if change is not None:
            self._changes.append(change)
        self._event.set()

    def wait(self, timeout_s: float) -> list[JobChange]:
        """Block up to `timeout_s` for a change (or a listener reconnect); return the changes seen since the last
        call, possibly none (timeout, or a wake-up that only asks for a re-read)."""
        if not self._changes:
            self._event.wait(max(0.0, timeout_s))
        self._event.clear()
        out = list(self._changes)
        self._changes.clear()
        return out

    def close(self) -> None:
        self._owner._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class JobEvents:
    """Publisher (every process) and, in the web process, the subscriber side with its one listener."""

    def __init__(self, r: redis.Redis, keys: JobKeys, clock: Clock, *, max_waiters: int = 1000) -> None:
        self._r = r
        self._clock = clock
        self._channel = keys.events
        self.max_waiters = max_waiters
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = {}
        self._count = 0
        self._listener: threading.Thread | None = None

    # -- publishing ---------------------------------------------------------------------------------
    def event_args(self, job_id: str, fields: Mapping[str, Any]) -> EventArgs:
        """The arguments of PUBLISH_CHANGE for a write of `fields` (the job's status/stage): the status
        scripts (JobStore._UPDATE_IF, the outbox's terminal write) publish the change themselves, in the
        round trip of the write and only if it happened. An empty status means "the status it had"."""
        return (job_id, self._channel, str(fields.get("status") or ""), str(fields.get("stage") or ""))

    def no_event(self, job_id: str) -> EventArgs:
        return (job_id, "", "", "")

    # -- subscribing --------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        return self._count

    def subscribe(self, job_id: str) -> Subscription | None:
        """A subscription to `job_id`'s changes, or None when this process already holds `max_waiters`."""
        with self._lock:
            if self._count >= self.max_waiters:
                return None
            sub = Subscription(self, job_id)
            self._subs.setdefault(job_id, set()).add(sub)
            self._count += 1
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(target=self._listen, name="job-events", daemon=True)
                self._listener.start()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.job_id)
            if subs is None or sub not in subs:
                return
            subs.discard(sub)
            self._count -= 1
            if not subs:
                del self._subs[sub.job_id]

    def _fan_out(self, change: JobChange | None) -> None:
        """Wake the subscriptions of `change.job_id`; None wakes all of them (after a reconnect: re-read)."""
        with self._lock:
            if change is None:
                targets = [s for subs in self._subs.values() for s in subs]
            else:
                targets = list(self._subs.get(change.job_id, ()))
        for sub in targets:
            sub._push(change)

    def _listen(self) -> None:
        """Runs for the life of the process: one pub/sub connection, reconnecting after any Redis error."""
        while True:
            pubsub = self._r.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._channel)
                self._fan_out(None)  # anything published while not subscribed: waiters re-read now
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    change = _parse(message.get("data"))
                    if change is not None:
                        self._fan_out(change)
            except (redis.RedisError, OSError):
                log.warning("job events listener lost Redis; reconnecting", exc_info=True)
                self._clock.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):  # closing a broken connection
                    pubsub.close()


def _parse(data: object) -> JobChange | None:
    try:
        body = json.loads(str(data))
        return JobChange(job_id=str(body["id"]), status=str(body["status"]), stage=str(body.get("stage") or ""))
    except (ValueError, KeyError, TypeError):
        return None
