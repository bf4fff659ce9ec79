"""`Prefer: wait` parsing and the waiting/streaming rules with the Flask test client (fakeredis, fake clock); the
job change notifications of `shared/jobs/events.py`. Real waiting is end to end: tests/e2e/test_waiting_clients.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fakeredis
import pytest
from flask import Flask

from api import create_app
from api.events import last_event_id
from api.waiting import MAX_WAIT_S, max_waiters, requested_wait
from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.jobs.events import JobChange
from shared.jobs.model import JobStage, JobStatus
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings

PHOTO = (Path(__file__).resolve().parents[1] / "fixtures" / "chelsea.png").read_bytes()


def _app(settings: Settings | None = None) -> Flask:
    return create_app(settings or Settings(), clock=FakeClock(), redis_conn=fakeredis.FakeRedis(decode_responses=True),
                      blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer())


@pytest.mark.parametrize(("header", "seconds"), [
    ("wait=10", 10), ("WAIT = 5", 5), ('wait="7"', 7), ("respond-async, wait=3", 3), ("wait=0", 0),
    ("wait=61", MAX_WAIT_S), ("wait=999999", MAX_WAIT_S), ("wait=3; foo=bar", 3), ("return=minimal", None),
    ("wait=", None), ("wait=-1", None), ("wait=1.5", None), ("wait=1234567", None), ("waiting=3", None),
    ("", None), ("wait=x, wait=4", 4)])
def test_prefer_wait_is_parsed_as_documented(header: str, seconds: int | None) -> None:
    app = Flask("t")
    with app.test_request_context(headers={"Prefer": header}):
        from flask import request

        assert requested_wait(request) == seconds


def test_gthread_keeps_a_thread_for_ordinary_requests() -> None:
    assert max_waiters(Settings(web_worker_class="gthread", web_threads=4, max_waiters=1000)) == 3
    assert max_waiters(Settings(web_worker_class="gevent", max_waiters=1000)) == 1000


def test_settings_read_the_worker_model_and_bounds() -> None:
    s = Settings.from_env({"NANOEDIT_WEB_WORKER_CLASS": "gthread", "NANOEDIT_MAX_WAITERS": "5",
                           "NANOEDIT_STREAM_MAX_S": "30", "NANOEDIT_WEB_WORKER_CONNECTIONS": "3000"})
    assert (s.web_worker_class, s.max_waiters, s.stream_max_s, s.web_worker_connections) == ("gthread", 5, 30, 3000)
    assert Settings.from_env({}).web_worker_class == "gevent"
    with pytest.raises(Exception, match="NANOEDIT_WEB_WORKER_CLASS"):
        Settings.from_env({"NANOEDIT_WEB_WORKER_CLASS": "sync"})


def test_last_event_id_is_a_number_or_none() -> None:
    assert [last_event_id(v) for v in ("7", " 12 ", "", None, "x", "1" * 13)] == [7, 12, 0, 0, 0, 0]


def _submit(c: object, headers: dict[str, str] | None = None) -> object:
    return c.post("/v1/jobs", headers=headers or {},  # type: ignore[attr-defined]
                  data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")})


def test_wait_zero_answers_at_once_with_the_preference_applied() -> None:
    c = _app().test_client()
    resp = _submit(c, {"Prefer": "wait=0"})
    assert resp.status_code == 202 and resp.headers["Preference-Applied"] == "wait=0"  # type: ignore[attr-defined]
    job_id = resp.json["id"]  # type: ignore[attr-defined]
    got = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=0"})
    assert got.status_code == 202 and got.headers["Preference-Applied"] == "wait=0"
    plain = c.get(f"/v1/jobs/{job_id}")
    assert plain.status_code == 200 and "Preference-Applied" not in plain.headers


def test_over_the_waiter_limit_the_preference_is_not_applied_and_streams_get_503() -> None:
    c = _app(Settings(max_waiters=0)).test_client()
    resp = _submit(c, {"Prefer": "wait=30"})
    assert resp.status_code == 202 and "Preference-Applied" not in resp.headers  # type: ignore[attr-defined]
    job_id = resp.json["id"]  # type: ignore[attr-defined]
    got = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=30"})
    assert got.status_code == 200 and "Preference-Applied" not in got.headers
    stream = c.get(f"/v1/jobs/{job_id}/events")
    assert stream.status_code == 503 and stream.json["code"] == "service_unavailable"  # type: ignore[index]
    assert stream.headers["Retry-After"]


def test_streams_and_waits_keep_the_owner_rule() -> None:
    c = _app(Settings(api_keys=("alice-key-1234", "bob-key-123456"))).test_client()
    resp = _submit(c, {"X-API-Key": "alice-key-1234"})
    job_id = resp.json["id"]  # type: ignore[attr-defined]
    bob = {"X-API-Key": "bob-key-123456"}
    assert c.get(f"/v1/jobs/{job_id}/events", headers=bob).status_code == 404
    assert c.get(f"/v1/jobs/{job_id}", headers={**bob, "Prefer": "wait=5"}).status_code == 404


def test_a_finished_job_streams_its_terminal_state_and_ends() -> None:
    app = _app()
    c = app.test_client()
    job_id = _submit(c).json["id"]  # type: ignore[attr-defined]
    store = app.extensions["nanoedit"].store
    store.request_cancel(job_id)  # queued → canceled at once
    body = c.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "4"}).get_data(as_text=True)
    assert body.startswith("retry: ")
    events = [block for block in body.split("\n\n") if block.startswith("id:")]
    assert len(events) == 1 and events[0].startswith("id: 5\nevent: job\ndata: ")
    assert json.loads(events[0].split("data: ", 1)[1])["status"] == "canceled"
    # HEAD answers the headers and frees the subscription, as does a stream that ran to its end
    head = c.head(f"/v1/jobs/{job_id}/events")
    assert head.status_code == 200 and head.headers["Content-Type"].startswith("text/event-stream")
    head.close()
    assert store.events.waiting == 0
    # The wait on a finished job answers 200 at once
    got = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=60"})
    assert got.status_code == 200 and got.headers["Preference-Applied"] == "wait=60"


def test_every_status_and_stage_change_is_published_and_fanned_out() -> None:
    app = _app()
    c = app.test_client()
    job_id = _submit(c).json["id"]  # type: ignore[attr-defined]
    store = app.extensions["nanoedit"].store
    events = store.events
    received: list[JobChange] = []
    other = events.subscribe("f" * 32)
    sub = events.subscribe(job_id)
    assert sub is not None and other is not None and events.waiting == 2
    # the listener subscribes in the background; fakeredis delivers once it has
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not received:
        store.set_stage(job_id, JobStage.QUEUED)
        received += sub.wait(0.2)
    store.start_preprocessing(job_id)
    store.set_stage(job_id, JobStage.GENERATING)
    store.finish(job_id, JobStatus.FAILED)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not received or received[-1].status != JobStatus.FAILED):
        received += sub.wait(0.2)
    tail = [(ch.status, ch.stage) for ch in received if ch.status != JobStatus.QUEUED]
    assert tail == [("running", "preprocessing"), ("running", "generating"), ("failed", "done")]
    assert other.wait(0) == []  # another job's waiter is not woken with these changes
    sub.close()
    other.close()
    assert events.waiting == 0
