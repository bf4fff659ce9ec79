"""The API on the S3 blob store (moto on loopback): streamed and redirected downloads, and an unreachable store
answering 503 storage_unavailable with the error body (Flask test client, fakeredis, stub enqueuer)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import requests
from flask.testing import FlaskClient

from api import create_app
from shared.blobs import blob_store, output_key
from shared.clock import FakeClock
from shared.jobs.model import JobStatus, OutputResult
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings
from tests.support.s3 import S3_ENV, MotoS3
from tests.support.stack import free_port

PHOTO = (Path(__file__).resolve().parents[1] / "fixtures" / "chelsea.png").read_bytes()
OUT = b"\x89PNG\r\n\x1a\n" + b"output bytes"
ONE = {"Authorization": "Bearer k-one-123456"}
TWO = {"Authorization": "Bearer k-two-123456"}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)


def make_client(env: dict[str, str]) -> FlaskClient:
    settings = Settings.from_env(env).with_(api_keys=("k-one-123456", "k-two-123456"))
    app = create_app(settings, clock=FakeClock(), redis_conn=fakeredis.FakeRedis(decode_responses=True),
                     blobs=blob_store(settings), enqueuer=RecordingEnqueuer())
    return app.test_client()


def dead_env() -> dict[str, str]:
    return {**S3_ENV, "NANOEDIT_BLOB_URL": "s3://bucket/x", "NANOEDIT_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}


def svc(client: FlaskClient) -> Any:
    return client.application.extensions["nanoedit"]


def submit(client: FlaskClient) -> Any:
    form = {"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")}
    return client.post("/v1/jobs", headers=ONE, data=form)


def finished_job(client: FlaskClient) -> str:
    """Submit as key ONE, then do what the workers would: store output 0, record it, finish the job."""
    resp = submit(client)
    assert resp.status_code == 202, resp.json
    job_id = str(resp.json["id"])  # type: ignore[index]
    s = svc(client)
    s.store.transition(job_id, JobStatus.RUNNING)
    s.blobs.put(output_key(job_id, 0), OUT)
    s.store.record_output(job_id, 0, OutputResult.succeeded(
        mime_type="image/png", width=64, height=48, size=len(OUT), sha256=hashlib.sha256(OUT).hexdigest()))
    s.store.finish(job_id, JobStatus.SUCCEEDED)
    return job_id


def test_outputs_stream_from_s3_by_default(moto_s3: MotoS3) -> None:
    client = make_client(moto_s3.env(moto_s3.new_bucket()))
    job_id = finished_job(client)
    resp = client.get(f"/v1/jobs/{job_id}/outputs/0", headers=ONE)
    assert resp.status_code == 200 and resp.data == OUT
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["ETag"] == f'"{hashlib.sha256(OUT).hexdigest()}"'


def test_redirects_send_the_owner_to_a_presigned_url(moto_s3: MotoS3) -> None:
    # Given redirects on and a finished job of key ONE
    client = make_client({**moto_s3.env(moto_s3.new_bucket()), "NANOEDIT_BLOB_REDIRECTS": "1",
                          "NANOEDIT_BLOB_REDIRECT_TTL_S": "120"})
    job_id = finished_job(client)
    # When its owner asks for the output
    resp = client.get(f"/v1/jobs/{job_id}/outputs/0", headers=ONE)
    # Then the answer is a temporary redirect to a presigned URL that serves the bytes without any key
    assert resp.status_code == 307 and resp.data == b""
    assert resp.headers["ETag"] == f'"{hashlib.sha256(OUT).hexdigest()}"'
    location = resp.headers["Location"]
    assert location.startswith(moto_s3.endpoint) and "X-Amz-Expires=120" in location
    fetched = requests.get(location, timeout=10)
    assert fetched.status_code == 200 and fetched.content == OUT
    assert fetched.headers["Content-Type"] == "image/png"
    # And the checks before it still hold: a matching ETag is 304, another key gets 404 and no URL
    etag = resp.headers["ETag"]
    assert client.get(f"/v1/jobs/{job_id}/outputs/0", headers={**ONE, "If-None-Match": etag}).status_code == 304
    other = client.get(f"/v1/jobs/{job_id}/outputs/0", headers=TWO)
    assert other.status_code == 404 and "Location" not in other.headers


def test_unreachable_store_on_submit_is_503_storage_unavailable_and_no_job() -> None:
    client = make_client(dead_env())
    resp = submit(client)
    assert resp.status_code == 503, resp.json
    assert resp.json["code"] == "storage_unavailable" and resp.json["suggestion"]  # type: ignore[index]
    assert resp.headers["Retry-After"] == "5"
    assert client.get("/v1/jobs", headers=ONE).json["jobs"] == []  # type: ignore[index]


def test_unreachable_store_on_download_is_503_storage_unavailable(moto_s3: MotoS3) -> None:
    # Given a finished job whose store then becomes unreachable
    client = make_client(moto_s3.env(moto_s3.new_bucket()))
    job_id = finished_job(client)
    svc(client).blobs = blob_store(Settings.from_env(dead_env()))
    # When the output is downloaded
    resp = client.get(f"/v1/jobs/{job_id}/outputs/0", headers=ONE)
    # Then the client gets the error body with 503, not a bare 500
    assert resp.status_code == 503 and resp.json["code"] == "storage_unavailable"  # type: ignore[index]


def test_the_pages_allow_the_store_origin_only_when_downloads_redirect_there() -> None:
    # Given redirects to an S3-compatible endpoint, and the same store without redirects
    store = {**S3_ENV, "NANOEDIT_BLOB_URL": "s3://bucket/x", "NANOEDIT_S3_ENDPOINT_URL": "http://127.0.0.1:9000"}
    redirecting = make_client({**store, "NANOEDIT_BLOB_REDIRECTS": "1"})
    streaming = make_client(store)
    # When the submit page and the dashboard are served
    for path in ("/", "/dashboard"):
        csp = redirecting.get(path).headers["Content-Security-Policy"]
        plain = streaming.get(path).headers["Content-Security-Policy"]
        # Then only the redirecting service lets the page fetch from the store's origin (nothing else opens)
        assert "connect-src 'self' http://127.0.0.1:9000;" in csp
        assert "connect-src 'self';" in plain and "127.0.0.1:9000" not in plain
        assert csp.replace(" http://127.0.0.1:9000", "") == plain
