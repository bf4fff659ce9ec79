"""Operator routes: run-time fleet limits and the circuit breaker (fakeredis, in-memory blobs)."""

from __future__ import annotations

import fakeredis
import pytest
from flask.testing import FlaskClient

from api import create_app
from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings


def make_client(**settings: object) -> FlaskClient:
    app = create_app(Settings(gemini_concurrency=3, gemini_rpm=0, **settings),  # type: ignore[arg-type]
                     clock=FakeClock(), redis_conn=fakeredis.FakeRedis(decode_responses=True),
                     blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer())
    return app.test_client()


@pytest.fixture
def client() -> FlaskClient:
    return make_client()


def test_limits_show_env_defaults_then_runtime_overrides(client: FlaskClient) -> None:
    before = client.get("/v1/admin/limits").json
    assert before is not None and before["config"]["concurrency"] == 3 and before["overrides"] == {}
    changed = client.patch("/v1/admin/limits", json={"rpm": 120, "concurrency": 5}).json
    assert changed is not None and changed["config"]["rpm"] == 120 and changed["config"]["concurrency"] == 5
    assert changed["defaults"]["concurrency"] == 3
    back = client.patch("/v1/admin/limits", json={"concurrency": None}).json
    assert back is not None and back["config"]["concurrency"] == 3 and back["config"]["rpm"] == 120
    reset = client.delete("/v1/admin/limits").json
    assert reset is not None and reset["overrides"] == {} and reset["config"]["rpm"] == 0


@pytest.mark.parametrize("body", [{}, {"burst": 3}, {"rpm": "fast"}, {"concurrency": 0}, {"rpm": True}, [1]])
def test_bad_limit_changes_are_400_with_a_suggestion(client: FlaskClient, body: object) -> None:
    resp = client.patch("/v1/admin/limits", json=body)
    assert resp.status_code == 400 and resp.json is not None
    assert resp.json["code"] == "invalid_request" and resp.json["suggestion"]


def test_circuit_can_be_forced_open_and_closed(client: FlaskClient) -> None:
    assert client.get("/v1/admin/circuit").json["state"] == "closed"  # type: ignore[index]
    opened = client.post("/v1/admin/circuit", json={"state": "open"}).json
    assert opened is not None and opened["state"] == "open" and opened["history"][0]["to"] == "open"
    assert client.post("/v1/admin/circuit", json={"state": "closed"}).json["state"] == "closed"  # type: ignore[index]
    bad = client.post("/v1/admin/circuit", json={"state": "half_open"})
    assert bad.status_code == 400 and bad.json["suggestion"]  # type: ignore[index]


def test_admin_routes_need_the_admin_token_when_auth_is_on() -> None:
    c = make_client(api_keys=("client-key-123",), admin_token="admin-token-456")
    assert c.get("/v1/admin/limits").status_code == 401
    assert c.get("/v1/admin/limits", headers={"Authorization": "Bearer client-key-123"}).status_code == 403
    assert c.get("/v1/admin/limits", headers={"X-Admin-Token": "admin-token-456"}).status_code == 200
    assert c.post("/v1/admin/circuit", json={"state": "open"},
                  headers={"Authorization": "Bearer admin-token-456"}).status_code == 200
