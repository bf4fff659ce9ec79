"""Clients that wait or stream, on a real stack (gunicorn with the default gevent workers, Celery, Redis):
`Prefer: wait=N` on POST /v1/jobs and GET /v1/jobs/{id}, the Server-Sent Events of GET /v1/jobs/{id}/events, and
1,000 idle waiters held by one web instance while ordinary requests are still answered (docs/api.md, "Waiting and
streaming"; docs/operations.md, "Web worker model").

The stack starts without a preprocess worker, so a submitted job stays `queued` until a test starts one: that makes
"the client is waiting on an unfinished job" deterministic, and starting the worker releases every waiter at once.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import FIXTURES
from tests.support.stack import RedisServer, Stack, make_stack, starting
from tests.support.waiters import hold_waiters, raise_open_files

pytestmark = pytest.mark.e2e
TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}
WAITERS = 1000


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import redis

    url = redis_server.url(6)
    redis.Redis.from_url(url).flushdb()
    s = make_stack(url, tmp_path_factory.mktemp("waiting"), NANOEDIT_LOCAL_DELAY_S="0.5")
    with starting(s):
        s.start_worker("generate", 2)
        s.start_api()
        s.wait_api()
        s.wait_live(("generate",))
    yield s
    s.stop()


@contextlib.contextmanager
def preprocessing(stack: Stack) -> Iterator[None]:
    """A preprocess worker for the duration: queued jobs start moving."""
    proc = stack.start_worker("preprocess", 1)
    try:
        yield
    finally:
        proc.stop()


def multipart() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", ("chelsea.png", (FIXTURES / "chelsea.png").read_bytes(), "application/octet-stream"))]


def submit(stack: Stack, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{stack.url}/v1/jobs", files=multipart(), data={"instruction": "make it black and white"},
                         headers={"Cache-Control": "no-cache", **(headers or {})}, timeout=90)


def read_events(resp: requests.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, data) of each `job` event of an SSE response, until the server ends the stream."""
    event: dict[str, str] = {}
    for raw in resp.iter_lines(decode_unicode=True):
        line = raw or ""
        if not line:
            if "data" in event:
                assert event.get("event") == "job", event
                yield event.get("id", ""), json.loads(event["data"])
            event = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        event[name] = value.removeprefix(" ")


def test_prefer_wait_on_submit_returns_the_finished_job(stack: Stack) -> None:
    with preprocessing(stack):
        # When a client submits with Prefer: wait=60
        resp = submit(stack, {"Prefer": "wait=60"})
    # Then the answer is the finished job: 200 with Preference-Applied, and its Location
    assert resp.status_code == 200, resp.text
    assert resp.headers["Preference-Applied"] == "wait=60"
    assert resp.json()["status"] == "succeeded"
    assert resp.headers["Location"] == f"/v1/jobs/{resp.json()['id']}"


def test_prefer_wait_on_an_unfinished_job_answers_202_after_n_seconds(stack: Stack) -> None:
    # Given a job that stays queued (no preprocess worker)
    job = submit(stack).json()
    assert job["status"] == "queued"
    # When a client reads it with Prefer: wait=1
    started = time.monotonic()
    resp = requests.get(f"{stack.url}/v1/jobs/{job['id']}", headers={"Prefer": "wait=1"}, timeout=30)
    # Then after about a second it gets 202 with the job as it is, and the preference marked as applied
    assert resp.status_code == 202, resp.text
    assert resp.headers["Preference-Applied"] == "wait=1"
    assert resp.json()["status"] == "queued"
    assert time.monotonic() - started >= 0.9
    # And without a preference (or with one we do not understand) the read is as always: 200 at once, no header
    for headers in ({}, {"Prefer": "return=minimal"}, {"Prefer": "wait=soon"}):
        plain = requests.get(f"{stack.url}/v1/jobs/{job['id']}", headers=headers, timeout=10)
        assert plain.status_code == 200 and "Preference-Applied" not in plain.headers


def test_an_event_stream_sees_every_transition_in_order(stack: Stack) -> None:
    # Given a queued job and a client following its events
    job = submit(stack).json()
    url = f"{stack.url}/v1/jobs/{job['id']}/events"
    with requests.get(url, stream=True, timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = read_events(resp)
        first_id, first = next(events)
        assert first["status"] == "queued" and first_id == "1"
        # When the pipeline runs the job
        with preprocessing(stack):
            rest = list(events)  # the server ends the stream after the terminal event
    # Then the client saw every status, in order, with increasing ids, ending with the finished job
    seen = [first, *(data for _, data in rest)]
    ids = [int(first_id), *(int(i) for i, _ in rest)]
    assert ids == list(range(1, len(ids) + 1))
    statuses = [e["status"] for e in seen]
    assert [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]] == ["queued", "running",
                                                                                        "succeeded"], statuses
    stages = [e["stage"] for e in seen]
    assert stages[0] == "queued" and "preprocessing" in stages and "generating" in stages and stages[-1] == "done"
    assert len(seen[-1]["outputs"]) == 1 and seen[-1]["progress"] == {"outputs_done": 1, "outputs_total": 1}
    # And a reconnect with Last-Event-ID replays the current (terminal) state, numbered on, then ends
    with requests.get(url, stream=True, timeout=30, headers={"Last-Event-ID": str(ids[-1])}) as again:
        replay = list(read_events(again))
    assert [(i, e["status"]) for i, e in replay] == [(str(ids[-1] + 1), "succeeded")]


def test_an_idle_stream_gets_keep_alive_comments(stack: Stack) -> None:
    # Given a client following a job that does not move (no preprocess worker)
    job = submit(stack).json()
    with requests.get(f"{stack.url}/v1/jobs/{job['id']}/events", stream=True, timeout=40) as resp:
        lines = resp.iter_lines(decode_unicode=True)
        # Then, after the current state, a comment arrives while nothing happens (every 15 s), and no event
        seen = []
        for line in lines:
            seen.append(line)
            if line and line.startswith(":"):
                break
    assert seen[-1] == ": keep-alive"
    assert sum(1 for line in seen if line and line.startswith("id:")) == 1


def test_an_unknown_job_has_no_event_stream(stack: Stack) -> None:
    resp = requests.get(f"{stack.url}/v1/jobs/{'0' * 32}/events", timeout=10)
    assert resp.status_code == 404 and resp.json()["code"] == "not_found"


def answered(socks: list[socket.socket]) -> int:
    """How many of the sockets have something to read (an answer, or a close). A selector (epoll), not
    select(): descriptors past 1024, which this test process easily holds, are out of select()'s range."""
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        return len(sel.select(timeout=0))


def read_answer(s: socket.socket) -> tuple[int, dict[str, str], dict[str, Any]]:
    s.settimeout(60)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def test_a_thousand_idle_waiters_do_not_starve_ordinary_requests(stack: Stack, tmp_path: Path) -> None:
    raise_open_files(WAITERS + 1000)
    # Given a queued job and 1,000 clients waiting on it (Prefer: wait=60), all held by one web instance
    job = submit(stack).json()
    socks = hold_waiters(stack.port, job["id"], WAITERS)
    try:
        time.sleep(1.0)
        assert answered(socks) == 0, "a waiter was answered before the job ended"
        # When ordinary clients use the API meanwhile
        timeout = 5  # generous: a functional bound (answered at all while 1,000 wait), not a latency claim
        assert requests.get(f"{stack.url}/healthz", timeout=timeout).status_code == 200
        assert requests.get(f"{stack.url}/v1/jobs/{job['id']}", timeout=timeout).json()["status"] == "queued"
        other = requests.post(f"{stack.url}/v1/jobs", files=multipart(), data={"instruction": "make it black "
                                                                                              "and white"},
                              headers={"Cache-Control": "no-cache"}, timeout=timeout)
        # Then they are answered, and the 1,000 are still waiting
        assert other.status_code == 202, other.text
        assert requests.get(f"{stack.url}/v1/jobs?limit=5", timeout=timeout).status_code == 200
        assert answered(socks) == 0
        # And when the job ends, every waiter gets the finished job with Preference-Applied
        with preprocessing(stack):
            results = [read_answer(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert {status for status, _, _ in results} == {200}
    assert {h.get("preference-applied") for _, h, _ in results} == {"wait=60"}
    assert {body["status"] for _, _, body in results} == {"succeeded"}
