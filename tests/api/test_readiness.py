"""GET /readyz scopes: the whole service (default) vs this web process (`?scope=web`, for load balancers)."""

from __future__ import annotations

import fakeredis
from flask.testing import FlaskClient

from api import create_app
from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings


def make_client(server: fakeredis.FakeServer) -> FlaskClient:
    app = create_app(Settings(), clock=FakeClock(), blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer(),
                     redis_conn=fakeredis.FakeRedis(server=server, decode_responses=True))
    return app.test_client()


def test_without_workers_the_service_is_not_ready_but_the_web_is() -> None:
    # Given Redis up and no worker or beat heartbeat at all
    client = make_client(fakeredis.FakeServer())
    # When both scopes are asked
    service = client.get("/readyz")
    web = client.get("/readyz?scope=web&detailed=true")
    # Then the service is 503 naming the missing processes, while this web process is ready on Redis alone
    assert service.status_code == 503 and service.json is not None
    assert set(service.json["failing"]) == {"workers_preprocess", "workers_generate", "beat"}
    assert web.status_code == 200 and web.json == {"status": "ready", "checks": {"redis": {"ok": True}}}


def test_the_web_scope_fails_when_redis_is_down() -> None:
    # Given Redis unreachable
    server = fakeredis.FakeServer()
    client = make_client(server)
    server.connected = False
    # When the web scope is asked
    resp = client.get("/readyz?scope=web")
    # Then it is 503 with Retry-After and the failing check named
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert resp.json is not None and resp.json["failing"] == ["redis"] and resp.json["suggestion"]


def test_an_unknown_or_repeated_scope_is_a_400_with_a_suggestion() -> None:
    client = make_client(fakeredis.FakeServer())
    for query in ("scope=worker", "scope=web&scope=service", "scope=WEB"):
        resp = client.get(f"/readyz?{query}")
        assert resp.status_code == 400 and resp.json is not None, query
        assert resp.json["code"] == "invalid_request" and "scope=web" in resp.json["suggestion"]
