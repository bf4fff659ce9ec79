"""webhook_url at intake (the SSRF table: 422 invalid_webhook_url, nothing stored) and the webhook routes
GET /v1/jobs/{id}/webhooks and POST .../redeliver, with the Flask test client (fakeredis, in-memory blobs)."""

from __future__ import annotations

import base64
import io
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient

import shared.outbound
from api import create_app
from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.jobs.model import JobStatus
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings

PHOTO = (Path(__file__).resolve().parents[1] / "fixtures" / "chelsea.png").read_bytes()
SECRET = "whsec_" + base64.b64encode(b"route-test-webhook-secret-32byte").decode()

SSRF_TABLE = [
    "http://127.0.0.1/hook", "http://localhost/hook", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook",
    "http://2130706433/hook", "http://0x7f.1/hook", "http://0177.0.0.1/hook", "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/", "http://[fc00::1]/hook", "http://0.0.0.0/hook",
    "http://100.64.0.1/hook", "http://224.0.0.1/hook", "http://[2002:7f00:1::1]/hook", "http://[fe80::1]/hook",
    "http://rebind.example/hook",  # a DNS name that resolves to 127.0.0.1 (resolver stubbed below)
    "http://8.8.8.8:8080/hook",  # a public address on a port that is not allowed
    "ftp://8.8.8.8/hook", "http://user:secret@8.8.8.8/hook",
]


@pytest.fixture(autouse=True)
def stub_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: `*.example` names resolve as below, `nowhere.invalid` does not, anything else as the system."""
    real = shared.outbound.system_resolver

    def resolve(host: str, port: int) -> Sequence[str]:
        if host == "rebind.example":
            return ["127.0.0.1"]
        if host.endswith(".example"):
            return ["93.184.215.14"]
        if host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port)

    monkeypatch.setattr(shared.outbound, "system_resolver", resolve)


def make(**settings: Any) -> tuple[FlaskClient, Any]:
    app = create_app(Settings(webhook_secret=SECRET, **settings), clock=FakeClock(),
                     redis_conn=fakeredis.FakeRedis(decode_responses=True), blobs=MemoryBlobStore(),
                     enqueuer=RecordingEnqueuer())
    return app.test_client(), app.extensions["nanoedit"]


def submit(client: FlaskClient, webhook_url: str | None = None, headers: dict[str, str] | None = None) -> Any:
    data: dict[str, Any] = {"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")}
    if webhook_url is not None:
        data["webhook_url"] = webhook_url
    return client.post("/v1/jobs", data=data, headers=headers or {})


@pytest.mark.parametrize("url", SSRF_TABLE)
def test_every_ssrf_form_is_refused_at_intake_and_nothing_is_stored(url: str) -> None:
    client, svc = make()
    resp = submit(client, url)
    body = resp.json
    assert resp.status_code == 422 and body["code"] == "invalid_webhook_url", body
    assert "NANOEDIT_WEBHOOK_ALLOW_HOSTS" in body["suggestion"] and body["details"]
    assert svc.blobs.blobs == {} and svc.redis.keys("*") == []
    assert svc.enqueuer.sent == []


def test_a_name_that_does_not_resolve_is_refused() -> None:
    client, _ = make()
    resp = submit(client, "https://nowhere.invalid/hook")
    assert resp.status_code == 422 and "does not resolve" in resp.json["details"]  # type: ignore[index]


def test_public_and_allowed_receivers_are_accepted() -> None:
    client, _ = make(webhook_allow_hosts=("127.0.0.1",))
    assert submit(client, "https://hooks.example/nanoedit").status_code == 202
    assert submit(client, "http://127.0.0.1:41234/hook").status_code == 202  # allowed host: any port


def test_a_caller_with_no_signing_secret_is_refused_as_before() -> None:
    app = create_app(Settings(), clock=FakeClock(), redis_conn=fakeredis.FakeRedis(decode_responses=True),
                     blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer())
    resp = submit(app.test_client(), "https://hooks.example/nanoedit")
    assert resp.status_code == 400 and "NANOEDIT_WEBHOOK_SECRET" in resp.json["suggestion"]  # type: ignore[index]


def test_webhook_routes_show_the_delivery_and_redeliver_a_finished_job() -> None:
    client, svc = make()
    plain = submit(client).json["id"]
    assert client.get(f"/v1/jobs/{plain}/webhooks").status_code == 404
    no_hook = client.post(f"/v1/jobs/{plain}/webhooks/redeliver")
    assert no_hook.status_code == 409 and no_hook.json["suggestion"]  # type: ignore[index]

    job_id = submit(client, "https://hooks.example/nanoedit").json["id"]
    pending = client.get(f"/v1/jobs/{job_id}/webhooks").json
    assert pending["state"] == "pending" and pending["attempts"] == [] and pending["webhook_id"] is None
    early = client.post(f"/v1/jobs/{job_id}/webhooks/redeliver")
    assert early.status_code == 409 and "terminal" in early.json["suggestion"]  # type: ignore[index]

    svc.store.transition(job_id, JobStatus.RUNNING)
    svc.store.finish(job_id, JobStatus.SUCCEEDED)
    owed = client.get(f"/v1/jobs/{job_id}/webhooks").json
    assert owed["webhook_id"] == f"msg_{job_id}_succeeded" and owed["next_attempt_at"] is not None
    svc.enqueuer.sent.clear()
    resp = client.post(f"/v1/jobs/{job_id}/webhooks/redeliver")
    assert resp.status_code == 202 and resp.json["state"] == "pending"  # type: ignore[index]
    assert [s[:2] for s in svc.enqueuer.sent] == [("webhook", job_id)]


def test_webhook_routes_are_owner_only() -> None:
    client, _ = make(api_keys=("k-one-123456", "k-two-123456"))
    one, two = {"Authorization": "Bearer k-one-123456"}, {"Authorization": "Bearer k-two-123456"}
    job_id = submit(client, "https://hooks.example/nanoedit", headers=one).json["id"]
    assert client.get(f"/v1/jobs/{job_id}/webhooks", headers=one).status_code == 200
    assert client.get(f"/v1/jobs/{job_id}/webhooks", headers=two).status_code == 404
    assert client.post(f"/v1/jobs/{job_id}/webhooks/redeliver", headers=two).status_code == 404
