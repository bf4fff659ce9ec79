"""Route-level rules with the Flask test client (fakeredis, in-memory blobs, a stub enqueuer, a fake clock)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient

from api import create_app
from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings

PHOTO = (Path(__file__).resolve().parents[1] / "fixtures" / "chelsea.png").read_bytes()


@pytest.fixture
def client() -> FlaskClient:
    app = create_app(Settings(), clock=FakeClock(), redis_conn=fakeredis.FakeRedis(decode_responses=True),
                     blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer())
    return app.test_client()


def submit(client: FlaskClient) -> str:
    resp = client.post("/v1/jobs", data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")})
    assert resp.status_code == 202, resp.json
    return str(resp.json["id"])  # type: ignore[index]


def test_paging_returns_every_job_even_when_created_in_the_same_millisecond(client: FlaskClient) -> None:
    # Given three jobs created at the very same instant (the fake clock does not move)
    ids = {submit(client) for _ in range(3)}
    # When the caller pages through one at a time
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        resp = client.get("/v1/jobs", query_string={"limit": 1, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200
        seen += [j["id"] for j in resp.json["jobs"]]  # type: ignore[index]
        cursor = resp.json["next_cursor"]  # type: ignore[index]
        if not cursor:
            break
    # Then every job shows up exactly once
    assert sorted(seen) == sorted(ids)


@pytest.mark.parametrize("n", ["²", "٣", "1e3", " 0"])
def test_non_ascii_or_odd_output_indexes_are_404_not_500(client: FlaskClient, n: str) -> None:
    job_id = submit(client)
    resp = client.get(f"/v1/jobs/{job_id}/outputs/{n}")
    assert resp.status_code == 404 and resp.json["code"] == "not_found"  # type: ignore[index]


@pytest.mark.parametrize("limit", ["²", "0", "101", "-1", "x"])
def test_bad_list_limits_are_400(client: FlaskClient, limit: str) -> None:
    resp = client.get("/v1/jobs", query_string={"limit": limit})
    assert resp.status_code == 400 and resp.json["suggestion"]  # type: ignore[index]


def test_bad_cursor_is_400(client: FlaskClient) -> None:
    resp = client.get("/v1/jobs", query_string={"cursor": "not-ours"})
    assert resp.status_code == 400 and resp.json["code"] == "invalid_request"  # type: ignore[index]


def test_unexpected_exception_is_a_500_error_body_without_internals(client: FlaskClient,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import api.jobs

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(api.jobs, "_create", boom)
    resp = client.post("/v1/jobs", data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")})
    assert resp.status_code == 500
    body = resp.json
    assert body is not None and body["code"] == "internal_error" and body["suggestion"]
    assert "secret" not in resp.get_data(as_text=True)


def test_auth_on_requires_a_key_and_hides_other_owners_jobs() -> None:
    app = create_app(Settings(api_keys=("k-one-123456", "k-two-123456")), clock=FakeClock(),
                     redis_conn=fakeredis.FakeRedis(decode_responses=True), blobs=MemoryBlobStore(),
                     enqueuer=RecordingEnqueuer())
    c = app.test_client()
    no_key = c.post("/v1/jobs", data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")})
    assert no_key.status_code == 401 and no_key.json["code"] == "unauthorized"  # type: ignore[index]
    one = {"Authorization": "Bearer k-one-123456"}
    resp = c.post("/v1/jobs", headers=one, data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")})
    assert resp.status_code == 202
    job_id = resp.json["id"]  # type: ignore[index]
    assert c.get(f"/v1/jobs/{job_id}", headers=one).status_code == 200
    other = c.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": "k-two-123456"})
    assert other.status_code == 404
    assert c.get("/v1/jobs", headers={"X-API-Key": "k-two-123456"}).json["jobs"] == []  # type: ignore[index]


def test_webhook_url_is_refused_when_the_server_cannot_sign(client: FlaskClient) -> None:
    resp = client.post("/v1/jobs", data={"instruction": "grayscale", "webhook_url": "http://127.0.0.1:9/h",
                                         "image": (io.BytesIO(PHOTO), "a.png")})
    assert resp.status_code == 400 and "NANOEDIT_WEBHOOK_SECRET" in resp.json["suggestion"]  # type: ignore[index]


def test_request_body_over_the_limit_is_413_payload_too_large() -> None:
    app = create_app(Settings(max_request_bytes=4096), clock=FakeClock(),
                     redis_conn=fakeredis.FakeRedis(decode_responses=True), blobs=MemoryBlobStore(),
                     enqueuer=RecordingEnqueuer())
    resp = app.test_client().post("/v1/jobs", data={"instruction": "grayscale",
                                                    "image": (io.BytesIO(PHOTO), "a.png")})
    assert resp.status_code == 413 and resp.json["code"] == "payload_too_large"  # type: ignore[index]
    assert resp.json["suggestion"]  # type: ignore[index]


def _running_with_generate_tasks(client: FlaskClient) -> tuple[str, Any]:
    job_id = submit(client)
    svc = client.application.extensions["nanoedit"]
    assert svc.store.transition(job_id, "running").ok
    assert svc.store.mark_generate_enqueued(job_id) and svc.store.set_stage(job_id, "generating")
    return job_id, svc


def test_cancel_of_a_job_waiting_for_generate_is_immediate(client: FlaskClient) -> None:
    job_id, _ = _running_with_generate_tasks(client)
    resp = client.delete(f"/v1/jobs/{job_id}")
    assert resp.status_code == 202
    assert resp.json["status"] == "canceled"  # type: ignore[index]
    assert resp.json["billed_provider_calls"] == 0  # type: ignore[index]


def test_cancel_while_an_output_is_at_the_provider_waits_for_it(client: FlaskClient) -> None:
    job_id, svc = _running_with_generate_tasks(client)
    assert svc.limiter.try_acquire(f"{job_id}:0").granted  # a worker holds a lease: the call is in flight
    resp = client.delete(f"/v1/jobs/{job_id}")
    assert resp.status_code == 202 and resp.json["status"] == "canceling"  # type: ignore[index]


def test_redis_down_is_503_with_retry_after_and_leaves_no_blobs() -> None:
    import redis as redis_lib

    blobs = MemoryBlobStore()
    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, decode_responses=True)
    app = create_app(Settings(), clock=FakeClock(), redis_conn=dead, blobs=blobs,
                     enqueuer=RecordingEnqueuer())
    c = app.test_client()
    resp = c.post("/v1/jobs", data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")})
    assert resp.status_code == 503 and resp.json["code"] == "service_unavailable"  # type: ignore[index]
    assert resp.headers["Retry-After"] and blobs.blobs == {}
    assert c.get(f"/v1/jobs/{'a' * 32}").status_code == 503


def test_result_cache_is_per_owner() -> None:
    app = create_app(Settings(api_keys=("alice-key-1234", "bob-key-123456")), clock=FakeClock(),
                     redis_conn=fakeredis.FakeRedis(decode_responses=True), blobs=MemoryBlobStore(),
                     enqueuer=RecordingEnqueuer())
    c = app.test_client()
    svc = app.extensions["nanoedit"]
    alice = c.post("/v1/jobs", headers={"X-API-Key": "alice-key-1234"},
                   data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")}).json
    assert alice is not None
    job = svc.store.get(alice["id"])
    svc.store.remember_result(job.request_hash, alice["id"], 3600)
    svc.store.transition(alice["id"], "running")
    svc.store.finish(alice["id"], "succeeded")
    bob = c.post("/v1/jobs", headers={"X-API-Key": "bob-key-123456"},
                 data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")}).json
    assert bob is not None and bob["cached_from"] is None and bob["status"] == "queued"


def test_expired_job_of_another_owner_is_404_not_410() -> None:
    clock = FakeClock()
    app = create_app(Settings(api_keys=("alice-key-1234", "bob-key-123456"), job_ttl_s=60), clock=clock,
                     redis_conn=fakeredis.FakeRedis(decode_responses=True), blobs=MemoryBlobStore(),
                     enqueuer=RecordingEnqueuer())
    c = app.test_client()
    job = c.post("/v1/jobs", headers={"X-API-Key": "alice-key-1234"},
                 data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")}).json
    assert job is not None
    clock.advance(120)
    assert c.get(f"/v1/jobs/{job['id']}", headers={"X-API-Key": "alice-key-1234"}).status_code == 410
    assert c.get(f"/v1/jobs/{job['id']}", headers={"X-API-Key": "bob-key-123456"}).status_code == 404
