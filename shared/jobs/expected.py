"""The ledger of expected generate work: which outputs have a generate message out, and by when that message
must have started (send time + countdown). Part of `JobStore` (a mixin over its private Redis handle and key
layout); docs/architecture.md, "Reconciler and expiry".

Why it exists: kombu's Redis transport takes a message off the Celery list (BRPOP) and only then records it as
unacked; a worker main process SIGKILLed in between loses the message, and nothing else would send it again. The
reconciler (workers/maintenance.py `_requeue_lost_generate`) lists entries overdue here and re-sends those whose
message is nowhere in flight. Writes ride on existing round trips where there is one: the first sends with the
job's entry into the generate waiting line, removal inside the record-output script, the terminal write's index
clean-up and expiry. A stale entry (its job finished or gone) costs the reconciler one check, which drops it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from shared.clock import Clock
from shared.jobs.keys import JobKeys


def expected_member(job_id: str, index: int) -> str:
    return f"{job_id}:{index}"


def expected_members(job_id: str, num_images: int) -> list[str]:
    """Every member a job can have in the ledger (one per output)."""
    return [expected_member(job_id, i) for i in range(max(1, num_images))]


@dataclass(frozen=True, slots=True)
class ExpectedOutput:
    """One output whose generate message should have started by `due_at` (epoch seconds)."""

    job_id: str
    index: int
    due_at: float


class ExpectedGenerate:
    _r: redis.Redis
    _keys: JobKeys
    clock: Clock

    def _expect(self, client: Any, job_id: str, indices: Iterable[int], countdown_s: float) -> None:
        """Queue the ledger write on `client` (the store's Redis handle or a pipeline of it)."""
        due = self.clock.now() + max(0.0, countdown_s)
        members = {expected_member(job_id, i): due for i in indices}
        if members:
            client.zadd(self._keys.generate_expected, members)

    def expect_generate(self, job_id: str, indices: Iterable[int], *, countdown_s: float = 0.0) -> None:
        """A generate message for each of `indices` is (about to be) sent, to start after `countdown_s`."""
        self._expect(self._r, job_id, indices, countdown_s)

    def expect_first_generate(self, job_id: str, num_images: int, waiting_since_ms: float) -> None:
        """Preprocessing is about to send the job's first generate messages: in one round trip, the job joins
        the generate waiting line (queue position) and every output's message becomes expected. Written before
        the sends, so a generate worker that records an output first cannot leave a stale entry behind."""
        pipe = self._r.pipeline(transaction=False)
        pipe.zadd(self._keys.waiting("generate"), {job_id: waiting_since_ms})
        self._expect(pipe, job_id, range(num_images), 0.0)
        pipe.execute()

    def overdue_generate(self, before: float, limit: int = 200) -> list[ExpectedOutput]:
        """Ledger entries whose message should have started before `before` (epoch seconds), oldest first."""
        rows: list[Any] = list(self._r.zrangebyscore(self._keys.generate_expected, "-inf", before, start=0,
                                                     num=limit, withscores=True))
        out: list[ExpectedOutput] = []
        for member, score in rows:
            job_id, _, index = str(member).rpartition(":")
            if job_id and index.isdigit():
                out.append(ExpectedOutput(job_id=job_id, index=int(index), due_at=float(score)))
            else:  # not written by this module: drop it rather than trip over it every run
                self._r.zrem(self._keys.generate_expected, member)
        return out

    def forget_expected(self, job_id: str, index: int) -> None:
        """No generate message is expected for this output any more (it is recorded, or its job ended)."""
        self._r.zrem(self._keys.generate_expected, expected_member(job_id, index))
