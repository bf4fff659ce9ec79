"""Worker-pool operator routes: GET /v1/admin/workers and POST /v1/admin/workers/scale over a scripted remote
control (fakeredis), their error bodies and the admin token; and once over a real broker with no worker at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import jsonschema
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from api.admin_pools import CONTROL_KEY
from api.openapi import openapi_document
from monitoring.pools import Replies, ScriptedControl
from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.liveness import WorkerRegistry
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings, SettingsError
from tests.support.stack import RedisServer

GEN = "generate-11@h"
HOOKS = "webhooks-12@h"


def make_app(settings: Settings, r: redis.Redis | None = None) -> Flask:
    return create_app(settings, clock=FakeClock(), redis_conn=r or fakeredis.FakeRedis(decode_responses=True),
                      blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer())


def scripted(app: Flask) -> ScriptedControl:
    """A generate instance (prefork, 2 processes, one task busy) and a webhooks instance (threads, 4)."""
    stats = {GEN: {"pid": 11, "total": {"nanoedit.generate": 3},
                   "pool": {"implementation": "celery.concurrency.prefork:TaskPool", "max-concurrency": 2,
                            "processes": [101, 102]}},
             HOOKS: {"pid": 12, "total": {}, "pool": {"implementation": "celery.concurrency.thread:TaskPool",
                                                      "max-concurrency": 4, "threads": 0}}}
    control = ScriptedControl(Replies(stats, {GEN: [{"id": "t1"}]}, {},
                                      {GEN: [{"name": "generate"}], HOOKS: [{"name": "webhooks"}]}))
    app.extensions[CONTROL_KEY] = control
    svc = app.extensions["nanoedit"]
    WorkerRegistry(svc.redis, svc.settings.redis_prefix, svc.clock, 5).record_worker(GEN, ["generate"])
    return control


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app(Settings(data_dir=tmp_path, gemini_concurrency=3))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def validate(app: Flask, schema_of: tuple[str, str, str], body: Any) -> None:
    doc = openapi_document(app.extensions["nanoedit"].settings)
    path, method, status = schema_of
    schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]},
                                    format_checker=jsonschema.FormatChecker()).validate(body)


def test_workers_lists_instances_per_queue_with_the_fleet_cap(app: Flask, client: FlaskClient) -> None:
    scripted(app)

    resp = client.get("/v1/admin/workers")

    assert resp.status_code == 200
    body = resp.get_json()
    validate(app, ("/v1/admin/workers", "get", "200"), body)
    generate = body["queues"]["generate"]
    assert (generate["slots"], generate["active"], generate["live_heartbeats"]) == (2, 1, 1)
    assert generate["instances"][0]["heartbeat_age_s"] == 0.0 and generate["instances"][0]["processed"] == 3
    assert body["queues"]["webhooks"]["instances"][0]["last_heartbeat_at"] is None
    assert body["fleet_cap"]["concurrency"] == 3 and body["fleet_cap"]["binds"] == "pool"


def test_scale_grows_the_pool_and_says_what_changed(app: Flask, client: FlaskClient) -> None:
    control = scripted(app)

    resp = client.post("/v1/admin/workers/scale", json={"queue": "generate", "delta": 2})

    assert resp.status_code == 200, resp.get_json()
    validate(app, ("/v1/admin/workers/scale", "post", "200"), resp.get_json())
    assert control.resized == [((GEN,), 2)]
    assert resp.get_json()["instances"] == [{"name": GEN, "before": 2, "requested": 2, "after": 4, "ok": True,
                                             "reply": "pool will grow"}]
    assert client.get("/v1/admin/workers").get_json()["queues"]["generate"]["slots"] == 4
    assert client.post("/v1/admin/workers/scale", json={"queue": "generate", "delta": -1.0}).status_code == 200


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"queue": "nosuch", "delta": 1}, 422, "unknown_queue"),
    ({"queue": "generate", "delta": 0}, 422, "invalid_scale"),
    ({"queue": "generate", "delta": 10_000}, 422, "invalid_scale"),
    ({"queue": "generate", "delta": "+2"}, 422, "invalid_scale"),
    ({"queue": "generate", "delta": -2}, 409, "pool_limit"),
    ({"queue": "webhooks", "delta": 1}, 409, "pool_not_resizable"),
    ({"queue": "preprocess", "delta": 1}, 409, "no_live_workers"),
    ({"queue": "generate"}, 400, "invalid_request"),
    ({"queue": "generate", "delta": 1, "force": True}, 400, "invalid_request"),
    ([1, 2], 400, "invalid_request"),
])
def test_refused_scales_have_the_error_body(app: Flask, client: FlaskClient, body: Any, status: int,
                                            code: str) -> None:
    control = scripted(app)

    resp = client.post("/v1/admin/workers/scale", json=body)

    assert resp.status_code == status
    error = resp.get_json()
    assert error["code"] == code and error["suggestion"] and error["status_code"] == status
    assert str(status) in openapi_document(app.extensions["nanoedit"].settings)[
        "paths"]["/v1/admin/workers/scale"]["post"]["responses"]
    assert control.resized == []


def test_the_process_ceiling_per_instance_is_the_setting(tmp_path: Path) -> None:
    # Given NANOEDIT_POOL_MAX_PROCESSES=3 and the generate instance at 2 processes
    app = make_app(Settings(data_dir=tmp_path, pool_max_processes=3))
    scripted(app)
    c = app.test_client()

    # When it grows by one, then by one more
    first = c.post("/v1/admin/workers/scale", json={"queue": "generate", "delta": 1})
    second = c.post("/v1/admin/workers/scale", json={"queue": "generate", "delta": 1})

    # Then the first is applied and the second refused, naming the bound
    assert first.status_code == 200 and first.get_json()["slots_after"] == 3
    assert second.status_code == 409 and second.get_json()["code"] == "pool_limit"
    assert "1 to 3 processes" in second.get_json()["suggestion"]


@pytest.mark.parametrize("raw", ["0", "many", "1025"])
def test_a_malformed_process_ceiling_fails_start_up(raw: str) -> None:
    with pytest.raises(SettingsError, match="NANOEDIT_POOL_MAX_PROCESSES"):
        Settings.from_env({"NANOEDIT_POOL_MAX_PROCESSES": raw})
    assert Settings.from_env({"NANOEDIT_POOL_MAX_PROCESSES": "8"}).pool_max_processes == 8


def test_pool_routes_need_the_admin_token_when_auth_is_on(tmp_path: Path) -> None:
    app = make_app(Settings(data_dir=tmp_path, api_keys=("client-key-123",), admin_token="admin-token-456"))
    scripted(app)
    c = app.test_client()

    assert c.get("/v1/admin/workers").status_code == 401
    assert c.get("/v1/admin/workers", headers={"Authorization": "Bearer client-key-123"}).status_code == 403
    assert c.post("/v1/admin/workers/scale", json={"queue": "generate", "delta": 1},
                  headers={"Authorization": "Bearer client-key-123"}).status_code == 403
    assert c.get("/v1/admin/workers", headers={"X-Admin-Token": "admin-token-456"}).status_code == 200


@pytest.mark.e2e
def test_no_worker_on_a_real_broker_is_a_bounded_409(tmp_path: Path, redis_server: RedisServer,
                                                     redis_db: redis.Redis) -> None:
    # Given a real Redis broker (db 1) that no worker listens on, and Celery's own remote control
    app = make_app(Settings(data_dir=tmp_path, redis_url=redis_server.url(1)), redis_db)
    c = app.test_client()

    # When the pools are read, then scaled
    view = c.get("/v1/admin/workers")
    scale = c.post("/v1/admin/workers/scale", json={"queue": "generate", "delta": 1})

    # Then every queue is empty (after the broadcast's timeout, not a hang), and the scale is refused
    assert view.status_code == 200
    assert all(q["instances"] == [] for q in view.get_json()["queues"].values())
    assert scale.status_code == 409 and scale.get_json()["code"] == "no_live_workers"
