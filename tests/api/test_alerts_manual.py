"""Custom alerts and resolve by hand (api/alerts_manual.py, monitoring/alerts/manual.py): they go through the
engine's lifecycle and channels (a real local Slack-shaped receiver), a rule alert resolved by hand stays resolved
while its condition holds, and every bad request is a 4xx with the error body (fakeredis, fake clock)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from monitoring.alerts import build_engine
from monitoring.alerts.manual import CUSTOM_PREFIX
from monitoring.report import ReportKeys
from shared.settings import Settings
from tests.support.alert_app import AlertApp, rules_file
from tests.support.receiver import Receiver
from tests.support.stack import wait_for


class Env(AlertApp):
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        super().__init__(Settings(alert_rules=rules_file(tmp_path), **settings))

    def report(self, error_rate: float) -> dict[str, Any]:
        """What beat stores as the latest report (the API's immediate evaluation reads it)."""
        report = {"windows": {"5m": {"error_rate": error_rate}}, "generated_at_ts": self.clock.now()}
        self.r.set(ReportKeys(self.settings.redis_prefix).latest, json.dumps(report))
        return report

    def beat(self, error_rate: float) -> None:
        """What beat does every interval: store a report and evaluate it."""
        build_engine(self.settings, self.r, self.clock).evaluate(self.report(error_rate))

    def alert(self, alert_id: str) -> dict[str, Any]:
        rows = self.client.get("/v1/monitoring/alerts?state=all").json["alerts"]  # type: ignore[index]
        return next((a for a in rows if a["id"] == alert_id), {})

    def history(self, alert_id: str) -> list[str]:
        events = self.client.get(f"/v1/monitoring/alerts?state=history&alert={alert_id}").json["events"]  # type: ignore[index]
        return [e["event"] for e in reversed(events)]


def texts(slack: Receiver) -> list[str]:
    return [str(req.json().get("text", "")) + json.dumps(req.json()) for req in slack.requests]


def test_custom_alert_fires_at_once_through_the_channels_and_resolves_by_hand(tmp_path: Path) -> None:
    with Receiver() as slack:
        # Given a deployment with Slack and a stored health report with nothing wrong
        env = Env(tmp_path, slack_webhook_url=slack.url)
        env.report(0.0)
        # When an operator raises a custom critical alert
        resp = env.client.post("/v1/monitoring/alerts", headers={"X-Operator": "ann"},
                               json={"severity": "critical", "message": "disk {name} on db-1 is full",
                                     "metadata": {"host": "db-1", "runbook": "https://runbooks/disk"}})
        # Then it fires at once with an id, and Slack got its message, verbatim and with its metadata
        assert resp.status_code == 201, resp.json
        created = resp.json
        assert created["id"].startswith(CUSTOM_PREFIX) and created["state"] == "firing"
        assert created["group"] == "custom" and created["labels"] == {"host": "db-1", "runbook": "https://runbooks/disk"}
        assert created["summary"] == "disk {name} on db-1 is full" and created["created_by"] == "ann"
        wait_for(lambda: any("disk {name} on db-1 is full" in t for t in texts(slack)), 10, "the firing message")
        assert any("db-1" in t and "FIRING" in t.upper() for t in texts(slack))
        # When it is resolved by hand
        sent = len(slack.requests)
        done = env.client.post(f"/v1/monitoring/alerts/{created['id']}/resolve",
                               json={"resolved_by": "bob", "comment": "freed 20 GB"})
        # Then it is resolved by bob, the resolved message went out, and the history says so
        assert done.status_code == 200 and done.json["state"] == "resolved" and done.json["resolved_by"] == "bob"
        wait_for(lambda: len(slack.requests) > sent, 10, "the resolved message")
        assert "RESOLVED" in texts(slack)[-1].upper()
        steps = env.history(created["id"])
        assert steps.index("firing") < steps.index("resolve_requested") < steps.index("resolved")
        events = env.client.get(f"/v1/monitoring/alerts?state=history&alert={created['id']}").json["events"]
        resolved = next(e for e in events if e["event"] == "resolved")
        assert resolved["resolved_by"] == "bob"
        # And a custom alert, once resolved, is gone at the next evaluation (it never clears by itself)
        env.clock.advance(30)
        env.beat(0.0)
        assert env.alert(created["id"]) == {}


def test_a_rule_alert_resolved_by_hand_stays_resolved_until_its_condition_clears(tmp_path: Path) -> None:
    # Given the error-rate rule firing
    env = Env(tmp_path)
    env.beat(0.5)
    first = env.alert("errors")
    assert first["state"] == "firing"
    # When an operator resolves it while the condition still holds
    resp = env.client.post("/v1/monitoring/alerts/errors/resolve", json={"resolved_by": "carol"})
    assert resp.status_code == 200 and resp.json["state"] == "resolved"
    # Then later evaluations with the condition still true keep it resolved (no new page)
    for _ in range(3):
        env.clock.advance(30)
        env.beat(0.5)
        assert env.alert("errors")["state"] == "resolved"
    # When the condition clears once and then comes back
    env.clock.advance(30)
    env.beat(0.0)
    assert env.alert("errors")["state"] == "resolved"
    env.clock.advance(30)
    env.beat(0.5)
    # Then it fires again as a new episode, no longer marked as resolved by hand
    again = env.alert("errors")
    assert again["state"] == "firing" and again["episode"] != first["episode"] and again["resolved_by"] == ""
    assert env.history("errors").count("firing") == 2


def test_custom_alert_waits_for_the_next_beat_when_there_is_no_report_yet(tmp_path: Path) -> None:
    # Given no health report stored yet
    env = Env(tmp_path)
    # When a custom alert is raised
    resp = env.client.post("/v1/monitoring/alerts", json={"severity": "low", "message": "heads up"})
    # Then it is accepted but not yet evaluated; the next beat evaluation fires it
    assert resp.status_code == 201 and resp.json["state"] == "inactive"
    env.beat(0.0)
    assert env.alert(resp.json["id"])["state"] == "firing"


@pytest.mark.parametrize("body", [
    {},
    {"severity": "urgent", "message": "x"},
    {"severity": "high"},
    {"severity": "high", "message": "   "},
    {"severity": "high", "message": "x" * 1001},
    {"severity": "high", "message": "x", "group": "bad group!"},
    {"severity": "high", "message": "x", "metadata": {"k": 1}},
    {"severity": "high", "message": "x", "metadata": ["a"]},
    {"severity": "high", "message": "x", "metadata": {f"k{i}": "v" for i in range(21)}},
    {"severity": "high", "message": "x", "metadata": {"k": "v" * 257}},
    {"severity": "high", "message": "x", "metadata": {"bad key": "v"}},
    {"severity": "high", "message": "x", "extra": True},
    {"severity": "high", "message": "x", "created_by": 5},
    {"severity": "high", "message": "x", "created_by": None},
    {"severity": "high", "message": "x", "group": None},
    {"severity": "high", "message": "x", "metadata": None},
])
def test_bad_custom_alerts_are_400_with_a_suggestion(tmp_path: Path, body: dict[str, Any]) -> None:
    resp = Env(tmp_path).client.post("/v1/monitoring/alerts", json=body)
    assert resp.status_code == 400 and resp.json is not None
    assert resp.json["code"] == "invalid_request" and resp.json["suggestion"]


def test_resolve_needs_a_firing_alert_and_resolved_by(tmp_path: Path) -> None:
    env = Env(tmp_path)
    assert env.client.post("/v1/monitoring/alerts/nope/resolve", json={"resolved_by": "x"}).status_code == 404
    env.beat(0.5)
    missing = env.client.post("/v1/monitoring/alerts/errors/resolve", json={})
    assert missing.status_code == 400 and "resolved_by" in missing.json["details"]  # type: ignore[index]
    too_long = env.client.post("/v1/monitoring/alerts/errors/resolve", json={"resolved_by": "x" * 101})
    assert too_long.status_code == 400
    assert env.client.post("/v1/monitoring/alerts/errors/resolve", json={"resolved_by": "x"}).status_code == 200
    again = env.client.post("/v1/monitoring/alerts/errors/resolve", json={"resolved_by": "x"})
    assert again.status_code == 409 and again.json["code"] == "conflict"  # type: ignore[index]


def test_history_is_bounded_by_limit(tmp_path: Path) -> None:
    env = Env(tmp_path)
    for i in range(4):
        env.client.post("/v1/monitoring/alerts", json={"severity": "low", "message": f"m{i}"})
        env.beat(0.0)
    events = env.client.get("/v1/monitoring/alerts?state=history&limit=3").json["events"]  # type: ignore[index]
    assert len(events) == 3
    for bad in ("0", "1001", "x", "-1"):
        assert env.client.get(f"/v1/monitoring/alerts?state=history&limit={bad}").status_code == 400


def test_custom_and_resolve_routes_need_the_admin_token_when_auth_is_on(tmp_path: Path) -> None:
    env = Env(tmp_path, api_keys=("client-key-123",), admin_token="admin-token-456")
    assert env.client.post("/v1/monitoring/alerts", json={"severity": "low", "message": "m"}).status_code == 401
    assert env.client.post("/v1/monitoring/alerts/errors/resolve", json={"resolved_by": "x"},
                           headers={"Authorization": "Bearer client-key-123"}).status_code == 403
    ok = env.client.post("/v1/monitoring/alerts", json={"severity": "low", "message": "m"},
                         headers={"X-Admin-Token": "admin-token-456"})
    assert ok.status_code == 201


def test_a_stale_report_is_not_re_evaluated(tmp_path: Path) -> None:
    # Given the latest report is older than three report intervals (beat is late or down)
    env = Env(tmp_path)
    env.report(0.5)
    env.clock.advance(3 * env.settings.report_interval_s + 1)
    # When a custom alert is raised
    resp = env.client.post("/v1/monitoring/alerts", json={"severity": "high", "message": "beat is late"})
    # Then it waits for the next evaluation, and the old data moved no rule alert
    assert resp.status_code == 201 and resp.json["state"] == "inactive"
    assert env.alert("errors") == {}
