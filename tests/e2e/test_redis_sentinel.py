"""Redis Sentinel failover under load (docs/operations.md, "Redis"): a master, a replica and a sentinel; web and
real workers find the master through the sentinel; jobs are submitted continuously while the master goes away,
either crashing (SIGKILL) or stopped on purpose (SHUTDOWN, which first lets the replica catch up). Every job the
API accepted (202) must still reach a terminal state and still be there once the dust settles. The failover time
(master gone → first write through the new master) and what clients saw are printed (run with -s to see them).

Not tested here because it loses data by design: `SENTINEL FAILOVER` while the old master is still up. Sentinel
promotes the replica but demotes the old master only some seconds later, and every write clients make to it in
between is discarded when it resyncs (docs/operations.md, "Redis")."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import FIXTURES
from tests.support.redis_topology import NO_RETRY, SentinelTrio
from tests.support.stack import Stack, start_stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

TERMINAL = ("succeeded", "partially_succeeded", "failed", "canceled")


@dataclass
class Submissions:
    """What the client saw: (monotonic time, HTTP status or 0 for a transport error, job id or "")."""

    results: list[tuple[float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, url: str, image: bytes) -> None:
        while not self.stop.is_set():
            try:
                resp = requests.post(f"{url}/v1/jobs", timeout=60, data={"instruction": "grayscale"},
                                     files=[("image", ("a.png", image))])
                job_id = resp.json().get("id", "") if resp.status_code == 202 else ""
                self.results.append((time.monotonic(), resp.status_code, job_id))
            except requests.RequestException:
                self.results.append((time.monotonic(), 0, ""))
            time.sleep(0.2)

    def accepted(self) -> list[str]:
        return [job_id for _, status, job_id in self.results if status == 202]


@pytest.fixture
def trio() -> Iterator[SentinelTrio]:
    t = SentinelTrio(down_after_ms=1000, failover_timeout_ms=5000)
    yield t
    t.stop()


@pytest.fixture
def sentinel_stack(trio: SentinelTrio, tmp_path: Path) -> Iterator[Stack]:
    # The URL's host is ignored (the sentinel names the master); its db applies. A short visibility timeout so a
    # task cut off by the failover comes back quickly.
    s = start_stack("redis://unused.invalid:6379/0", tmp_path / "stack", generate=(2,), beat=True, webhooks=0,
                    flush=False, NANOEDIT_REDIS_SENTINELS=f"127.0.0.1:{trio.sentinel_port}",
                    NANOEDIT_REDIS_MASTER=trio.MASTER, NANOEDIT_VISIBILITY_TIMEOUT_S="15")
    yield s
    s.stop()


def first_write_through_new_master(trio: SentinelTrio, old: tuple[str, int], timeout_s: float) -> float:
    """Poll as a client would: ask the sentinel for the master, write to it; monotonic time of the first success
    on a master other than `old`."""

    def wrote() -> float | None:
        try:
            addr = trio.master_address()
            if addr == old:
                return None
            client = redis.Redis(host=addr[0], port=addr[1], socket_timeout=0.5, socket_connect_timeout=0.5,
                                 retry=NO_RETRY)  # one attempt per poll, so the time measured is the failover's
            try:
                client.set("failover-probe", "1")
            finally:
                client.close()
            return time.monotonic()
        except redis.RedisError:
            return None

    return float(wait_for(wrote, timeout_s, "a write through the new master", 0.02))


@pytest.mark.parametrize("how", ["sigkill", "shutdown"])
def test_every_accepted_job_finishes_across_a_master_failover(trio: SentinelTrio, sentinel_stack: Stack,
                                                               how: str) -> None:
    s = sentinel_stack
    old_master = trio.master_address()
    assert old_master == ("127.0.0.1", trio.master_port)
    subs = Submissions()
    submitter = threading.Thread(target=subs.run, args=(s.url, (FIXTURES / "chelsea.png").read_bytes()),
                                 daemon=True)
    try:
        # Given jobs being submitted continuously through a web process and workers that found the master
        # through the sentinel
        submitter.start()
        wait_for(lambda: len(subs.accepted()) >= 5, 60, "the first accepted jobs", 0.1)

        # When the master goes away in the middle of it
        killed_at = time.monotonic()
        if how == "sigkill":
            trio.kill_master()
        else:
            trio.shutdown_master()
        written_at = first_write_through_new_master(trio, old_master, 60)
        # and submissions go on until the service accepts jobs again (and a little longer)
        wait_for(lambda: any(t > written_at and st == 202 for t, st, _ in subs.results), 90,
                 "a job accepted after the failover", 0.1)
        time.sleep(3)
    finally:
        subs.stop.set()
        submitter.join(90)

    assert trio.master_address() == ("127.0.0.1", trio.replica_port)
    accepted = subs.accepted()
    after = [(t, st) for t, st, _ in subs.results if t > killed_at]
    first_ok = min(t for t, st in after if st == 202)
    refused = [st for _, st in after if st != 202]

    # Then every accepted job reaches a terminal state
    statuses: dict[str, str] = {}

    def all_terminal() -> bool:
        for job_id in accepted:
            if statuses.get(job_id) in TERMINAL:
                continue
            resp = requests.get(f"{s.url}/v1/jobs/{job_id}", timeout=30)
            statuses[job_id] = resp.json().get("status", f"http {resp.status_code}")
        return all(statuses[j] in TERMINAL for j in accepted)

    try:
        wait_for(all_terminal, 180, "every accepted job to finish", 1.0)
    except TimeoutError:
        pytest.fail(f"not terminal: {[(j, st) for j, st in statuses.items() if st not in TERMINAL]}\n{s.logs()}")
    # and still is once nothing can be pending on the old master any more (read afresh, not remembered)
    time.sleep(2)
    final = {j: requests.get(f"{s.url}/v1/jobs/{j}", timeout=30).json().get("status", "gone") for j in accepted}
    counts = {st: sum(1 for v in final.values() if v == st) for st in sorted(set(final.values()))}
    print(f"\nsentinel failover ({how}): first write through the new master {written_at - killed_at:.2f} s after "
          f"the master went away; first 202 {first_ok - killed_at:.2f} s after it; {len(refused)} submissions refused "
          f"meanwhile (statuses {sorted(set(refused))}); {len(accepted)} accepted in all, final statuses {counts}")
    assert counts.get("succeeded", 0) == len(accepted), counts
