"""Alert routes: firing alerts and history, ack, test notification, silences CRUD, admin auth (fakeredis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from api.openapi import openapi_document
from monitoring.alerts import build_engine
from monitoring.alerts.notifier import Notifier
from monitoring.alerts.rules import RulesError, parse_rules
from shared.clock import FakeClock
from shared.settings import Settings
from tests.support.alert_app import RULE, AlertApp
from tests.support.receiver import Receiver


class Env(AlertApp):
    def __init__(self, **settings: Any) -> None:
        super().__init__(Settings(**settings))

    def fire(self, error_rate: float = 0.5) -> None:
        """What beat does: evaluate a report (only the log channel is configured)."""
        engine = build_engine(self.settings, self.r, self.clock, rules=parse_rules(RULE, "t.toml"),
                              notifier=Notifier([], clock=FakeClock()))
        engine.evaluate({"windows": {"5m": {"error_rate": error_rate}}})


@pytest.fixture
def env() -> Env:
    return Env()


def alert_schema(name: str) -> jsonschema.Draft202012Validator:
    doc = openapi_document(Settings())
    schema = doc["paths"]["/v1/monitoring/alerts"]["get"]["responses"]["200"]["content"]["application/json"]
    if name == "silence":
        schema = doc["paths"]["/v1/monitoring/silences/{silence_id}"]["get"]["responses"]["200"]["content"][
            "application/json"]
    return jsonschema.Draft202012Validator(schema["schema"])


def test_firing_alerts_then_ack_then_history(env: Env) -> None:
    empty = env.client.get("/v1/monitoring/alerts")
    assert empty.status_code == 200 and empty.json == {"state": "firing", "evaluated_at": None,
                                                       "evaluation_age_s": None, "alerts": []}
    env.fire()
    env.clock.advance(12)

    listed = env.client.get("/v1/monitoring/alerts?state=firing").json
    assert listed is not None and listed["evaluation_age_s"] == 12.0
    alert_schema("alerts").validate(listed)
    (alert,) = listed["alerts"]
    assert alert["id"] == "errors" and alert["state"] == "firing" and alert["acknowledged"] is None

    acked = env.client.post("/v1/monitoring/alerts/errors/ack", json={"by": "ann", "comment": "on it"})
    assert acked.status_code == 200 and acked.json["acknowledged"]["by"] == "ann"  # type: ignore[index]
    listed = env.client.get("/v1/monitoring/alerts").json
    assert listed["alerts"][0]["acknowledged"]["comment"] == "on it"  # type: ignore[index]

    history = env.client.get("/v1/monitoring/alerts?state=history&limit=10").json
    assert [e["event"] for e in history["events"]] == ["acked", "notified", "firing", "pending"]  # type: ignore[index]


def test_ack_of_unknown_or_resolved_alerts(env: Env) -> None:
    assert env.client.post("/v1/monitoring/alerts/nope/ack").status_code == 404
    env.fire()
    env.fire(error_rate=0.0)
    resolved = env.client.post("/v1/monitoring/alerts/errors/ack")
    assert resolved.status_code == 409 and resolved.json["code"] == "conflict"  # type: ignore[index]
    assert env.client.get("/v1/monitoring/alerts?state=all").json["alerts"][0]["state"] == "resolved"  # type: ignore[index]
    bad = env.client.get("/v1/monitoring/alerts?state=open")
    assert bad.status_code == 400 and bad.json["suggestion"]  # type: ignore[index]


def test_silences_crud(env: Env) -> None:
    created = env.client.post("/v1/monitoring/silences", json={
        "matchers": {"group": "job_*"}, "duration_s": 3600, "comment": "provider incident", "created_by": "ann"})
    assert created.status_code == 201, created.json
    silence = created.json
    assert silence is not None and silence["state"] == "active" and silence["ends_at"] == "2023-11-14T23:13:20.000Z"
    assert created.headers["Location"] == f"/v1/monitoring/silences/{silence['id']}"
    alert_schema("silence").validate(silence)
    env.fire()
    assert env.client.get("/v1/monitoring/alerts").json["alerts"][0]["silenced_by"] == silence["id"]  # type: ignore[index]

    url = f"/v1/monitoring/silences/{silence['id']}"
    assert env.client.get(url).json == silence
    extended = env.client.patch(url, json={"ends_at": "2023-11-15T12:00:00Z", "comment": "still broken"}).json
    assert extended is not None and extended["ends_at"] == "2023-11-15T12:00:00.000Z"
    assert extended["comment"] == "still broken" and extended["updated_at"]
    assert [s["id"] for s in env.client.get("/v1/monitoring/silences").json["silences"]] == [silence["id"]]  # type: ignore[index]

    assert env.client.delete(url).json["deleted"] is True  # type: ignore[index]
    assert env.client.get(url).status_code == 404 and env.client.delete(url).status_code == 404


@pytest.mark.parametrize("body", [
    {"matchers": {"group": "x"}, "duration_s": 60},  # no comment
    {"matchers": {}, "duration_s": 60, "comment": "c"},
    {"matchers": {"team": "x"}, "duration_s": 60, "comment": "c"},
    {"matchers": {"group": "x"}, "comment": "c"},  # no end
    {"matchers": {"group": "x"}, "ends_at": "2020-01-01T00:00:00Z", "comment": "c"},  # in the past
    {"matchers": {"group": "x"}, "ends_at": "tomorrow", "comment": "c"},
    {"matchers": {"group": "x"}, "ends_at": "2030-01-01T00:00:00", "comment": "c"},  # no zone
    {"matchers": {"group": "x"}, "duration_s": -5, "comment": "c"},
    [1, 2],
])
def test_bad_silences_are_400_with_a_suggestion(env: Env, body: object) -> None:
    resp = env.client.post("/v1/monitoring/silences", json=body)
    assert resp.status_code == 400 and resp.json is not None
    assert resp.json["code"] == "invalid_request" and resp.json["suggestion"]


def test_test_notification_reports_every_channel() -> None:
    with Receiver([500]) as slack:
        env = Env(slack_webhook_url=slack.url)
        resp = env.client.post("/v1/monitoring/alerts/test")
        assert resp.status_code == 200 and resp.json is not None
        assert resp.json["delivered"] == ["log", "slack"] and resp.json["failed"] == []
        slack_attempts = [d for d in resp.json["notification"]["deliveries"] if d["channel"] == "slack"]
        assert [(d["attempt"], d["status"]) for d in slack_attempts] == [(1, 500), (2, 200)]
        assert "this channel works" in slack.requests[-1].json()["text"]
    history = env.client.get("/v1/monitoring/alerts?state=history").json
    assert history["events"][0]["kind"] == "test"  # type: ignore[index]


def test_alert_routes_need_the_admin_token_when_auth_is_on() -> None:
    env = Env(api_keys=("client-key-123",), admin_token="admin-token-456")
    assert env.client.get("/v1/monitoring/alerts").status_code == 401
    assert env.client.get("/v1/monitoring/silences",
                          headers={"Authorization": "Bearer client-key-123"}).status_code == 403
    assert env.client.post("/v1/monitoring/alerts/test").status_code == 401
    assert env.client.get("/v1/monitoring/silences", headers={"X-Admin-Token": "admin-token-456"}).status_code == 200


def test_a_bad_rules_file_fails_api_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text(RULE.replace("critical", "urgent"))
    with pytest.raises(RulesError, match=r"rule #1 'errors'"):
        Env(alert_rules=str(bad))
