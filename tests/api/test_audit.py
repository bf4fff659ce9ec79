"""The audit log (monitoring/audit.py, GET /v1/monitoring/audit): every operator action kind is recorded with who,
what, when and before/after; refused requests are not; `limit` and `since` bound the answer; the route is the
operator's (fakeredis, fake clock, a scripted pool remote control)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import jsonschema
import pytest

from api.openapi import openapi_document
from monitoring.alerts import build_engine
from monitoring.audit import ACTIONS, AuditLog
from shared.clock import FakeClock, rfc3339
from shared.settings import Settings
from tests.api.test_pool_routes import scripted
from tests.support.alert_app import T0, AlertApp, rules_file


class Env(AlertApp):
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        super().__init__(Settings(data_dir=tmp_path, alert_rules=rules_file(tmp_path), gemini_concurrency=3,
                                  **settings))

    def fire(self) -> None:
        build_engine(self.settings, self.r, self.clock).evaluate({"windows": {"5m": {"error_rate": 0.5}}})

    def entries(self, query: str = "") -> list[dict[str, Any]]:
        resp = self.client.get(f"/v1/monitoring/audit{query}")
        assert resp.status_code == 200, resp.json
        doc = openapi_document(self.settings)
        schema = doc["paths"]["/v1/monitoring/audit"]["get"]["responses"]["200"]["content"]["application/json"]
        jsonschema.Draft202012Validator(schema["schema"], format_checker=jsonschema.FormatChecker()).validate(
            resp.json)
        return list(resp.json["entries"])  # type: ignore[index]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_every_operator_action_kind_is_audited(env: Env) -> None:
    # Given a firing alert, a scripted worker pool and an operator who says who they are
    env.fire()
    scripted(env.app)
    who = {"X-Operator": "dana"}
    c = env.client
    # When the operator does one of each action, a second apart
    steps = [
        lambda: c.post("/v1/monitoring/alerts/errors/ack", json={"comment": "looking"}, headers=who),
        lambda: c.post("/v1/monitoring/alerts/errors/resolve", json={"resolved_by": "dana"}, headers=who),
        lambda: c.post("/v1/monitoring/alerts", json={"severity": "low", "message": "m"}, headers=who),
        lambda: c.post("/v1/monitoring/silences", json={"matchers": {"group": "x"}, "comment": "maintenance",
                                                        "duration_s": 600}, headers=who),
        lambda: c.patch(f"/v1/monitoring/silences/{silence_id()}", json={"duration_s": 1200}, headers=who),
        lambda: c.delete(f"/v1/monitoring/silences/{silence_id()}", headers=who),
        lambda: c.patch("/v1/admin/limits", json={"rpm": 120}, headers=who),
        lambda: c.delete("/v1/admin/limits", headers=who),
        lambda: c.post("/v1/admin/circuit", json={"state": "open"}, headers=who),
        lambda: c.post("/v1/admin/workers/scale", json={"queue": "generate", "delta": 1}, headers=who),
    ]

    def silence_id() -> str:
        return str(c.get("/v1/monitoring/silences").json["silences"][0]["id"])  # type: ignore[index]

    for step in steps:
        resp = step()
        assert resp.status_code in (200, 201), resp.json
        env.clock.advance(1)
    # Then the audit log holds every action kind, newest first, each by dana at its own time
    entries = env.entries()
    assert [e["action"] for e in reversed(entries)] == list(ACTIONS)
    assert {e["actor"] for e in entries} == {"dana"} and {e["credential"] for e in entries} == {"auth_off"}
    assert [e["at"] for e in reversed(entries)] == [rfc3339(T0 + i) for i in range(len(ACTIONS))]
    by = {e["action"]: e for e in entries}
    # And the changes carry their before/after
    assert by["limits.update"]["before"]["rpm"] != 120 and by["limits.update"]["after"]["rpm"] == 120
    assert by["limits.reset"]["before"]["rpm"] == 120
    assert by["circuit.force"]["before"] == {"state": "closed"} and by["circuit.force"]["after"] == {"state": "open"}
    assert by["workers.scale"]["target"] == "generate" and by["workers.scale"]["before"] == {"slots": 2}
    assert by["workers.scale"]["after"] == {"slots": 3}
    assert by["silence.update"]["before"]["ends_at"] != by["silence.update"]["after"]["ends_at"]
    assert by["alert.ack"]["target"] == "errors" and by["alert.resolve"]["after"] == {"state": "resolved"}
    assert by["alert.create"]["after"]["message"] == "m" and all(e["request_id"] for e in entries)


def test_actor_falls_back_to_the_body_then_admin_and_refusals_are_not_audited(env: Env) -> None:
    env.fire()
    # Given an ack naming its author in the body, and a limit change naming nobody
    assert env.client.post("/v1/monitoring/alerts/errors/ack", json={"by": "erin"}).status_code == 200
    assert env.client.patch("/v1/admin/limits", json={"rpm": 60}).status_code == 200
    # And requests that were refused
    assert env.client.patch("/v1/admin/limits", json={"rpm": "fast"}).status_code == 400
    assert env.client.post("/v1/admin/circuit", json={"state": "half"}).status_code == 400
    assert env.client.post("/v1/monitoring/alerts/nope/resolve", json={"resolved_by": "x"}).status_code == 404
    # Then only the two actions are logged, with the right actors
    entries = env.entries()
    assert [(e["action"], e["actor"]) for e in entries] == [("limits.update", "admin"), ("alert.ack", "erin")]


def test_limit_and_since_bound_the_answer(env: Env) -> None:
    for i in range(5):
        env.client.patch("/v1/admin/limits", json={"rpm": 10 + i})
        env.clock.advance(60)
    assert len(env.entries("?limit=2")) == 2
    since = env.entries(f"?since={rfc3339(T0 + 120)}")
    assert [e["after"]["rpm"] for e in since] == [14, 13, 12]
    for bad in ("?limit=0", "?limit=1001", "?limit=x", "?since=yesterday", "?since=2030-01-01T00:00:00"):
        resp = env.client.get(f"/v1/monitoring/audit{bad}")
        assert resp.status_code == 400 and resp.json["code"] == "invalid_request", bad  # type: ignore[index]


def test_the_log_is_capped() -> None:
    clock = FakeClock(T0)
    log = AuditLog(fakeredis.FakeRedis(decode_responses=True), "t", clock, max_entries=3)
    for i in range(5):
        log.record("limits.update", actor="a", credential="auth_off", target=str(i))
        clock.advance(1)
    assert [e.target for e in log.entries(10)] == ["4", "3", "2"]


def test_the_audit_route_needs_the_admin_token_when_auth_is_on(tmp_path: Path) -> None:
    env = Env(tmp_path, api_keys=("client-key-123",), admin_token="admin-token-456")
    assert env.client.get("/v1/monitoring/audit").status_code == 401
    assert env.client.get("/v1/monitoring/audit", headers={"Authorization": "Bearer client-key-123"}).status_code == 403
    admin = {"X-Admin-Token": "admin-token-456"}
    assert env.client.post("/v1/admin/circuit", json={"state": "open"}, headers=admin).status_code == 200
    entries = env.client.get("/v1/monitoring/audit", headers=admin).json["entries"]  # type: ignore[index]
    assert entries[0]["credential"] == "admin_token" and entries[0]["actor"] == "admin"

