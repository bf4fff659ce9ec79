"""Paging over real Redis, real local HTTP receivers and an injected clock: PagerDuty's trigger → acknowledge →
resolve on one dedup key, SMS in Twilio's form, escalation of unacknowledged alerts, quiet hours and the morning
digest, and the paging policy's validation. Nothing here sleeps to test time.
"""

from __future__ import annotations

import base64
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import pytest
import redis

from monitoring.alerts import build_engine, check_config
from monitoring.alerts.channels import ChannelConfigError, LogChannel, RecordingChannel, SlackChannel
from monitoring.alerts.channels_paging import PD_SEVERITY, PagerDutyChannel, SmsChannel
from monitoring.alerts.engine import AlertEngine
from monitoring.alerts.model import AlertView, Notification
from monitoring.alerts.notifier import Notifier, build_channels
from monitoring.alerts.paging import PagingPolicy, load_paging, parse_paging
from monitoring.alerts.rules import RulesError, parse_rules
from monitoring.alerts.store import AlertStore
from shared.clock import FakeClock
from shared.redaction import redact, secrets_of
from shared.settings import Settings
from tests.support.receiver import Receiver

PARIS = ZoneInfo("Europe/Paris")


def paris(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=PARIS).timestamp()


RULES = """
[[rules]]
name = "errors"
group = "job_errors"
severity = "critical"
metric = "windows.5m.error_rate"
op = ">"
threshold = 0.10
summary = "error rate {value:.0%}"
[[rules]]
name = "latency"
group = "latency"
severity = "medium"
metric = "windows.5m.p95"
op = ">"
threshold = 20
summary = "p95 {value:.0f} s"
[[rules]]
name = "queue"
group = "queues"
severity = "medium"
metric = "windows.5m.oldest"
op = ">"
threshold = 120
summary = "oldest job {value:.0f} s"
"""
QUIET = """
[settings.quiet_hours]
timezone = "Europe/Paris"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "18:00"
hold_below = "critical"
[settings.escalation.critical]
response_min = 15
first = ["pagerduty", "sms", "slack"]
steps = [{ after_min = 15, label = "engineering manager", to = ["email:em@example.com", "slack:@eng-manager"] }]
"""


def report(*, err: float = 0.0, p95: float = 1.0, oldest: float = 0.0) -> dict[str, Any]:
    return {"windows": {"5m": {"error_rate": err, "p95": p95, "oldest": oldest}}}


def engine(r: redis.Redis, clock: FakeClock, channels: list[Any], extra: str = "") -> AlertEngine:
    text = extra + RULES
    return AlertEngine(r, "t", clock, parse_rules(text, "test.toml"),
                       Notifier([LogChannel(), *channels], timeout_s=2, clock=FakeClock()),
                       paging=parse_paging(tomllib.loads(text).get("settings", {}), "test.toml"))


def history(r: redis.Redis, event: str) -> list[dict[str, Any]]:
    return [e for e in AlertStore(r, "t", FakeClock()).history(1000) if e["event"] == event]


def test_pagerduty_sees_trigger_acknowledge_resolve_with_one_dedup_key(redis_db: redis.Redis) -> None:
    clock = FakeClock(paris(2026, 11, 30, 10))
    with Receiver() as pd:
        eng = engine(redis_db, clock, [PagerDutyChannel("R0UTINGKEY", pd.url), RecordingChannel("slack")])
        # Given a critical alert firing: PagerDuty gets a trigger
        eng.evaluate(report(err=0.5))
        clock.advance(30)
        eng.evaluate(report(err=0.5))  # still firing, before the cooldown: nothing new
        # When an operator acknowledges it here (what POST /v1/monitoring/alerts/{id}/ack does)
        st = eng.store.get("errors")
        assert st is not None
        eng.store.ack(st, by="alice", comment="on it")
        clock.advance(30)
        eng.evaluate(report(err=0.5))
        clock.advance(30)
        eng.evaluate(report(err=0.5))  # the acknowledge goes once per incident
        # And the condition clears: resolved
        clock.advance(30)
        eng.evaluate(report(err=0.0))
        # Then PagerDuty saw trigger → acknowledge → resolve, all on one dedup key
        events = [q.json() for q in pd.requests]
        assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
        assert len({e["dedup_key"] for e in events}) == 1 and events[0]["dedup_key"].startswith("nanoedit/job_errors-")
        assert all(e["routing_key"] == "R0UTINGKEY" for e in events)
        payload = events[0]["payload"]
        assert payload["severity"] == "critical" and payload["source"] == "nanoedit"
        assert payload["summary"].startswith("[CRITICAL] FIRING job_errors: error rate 50%")
        assert payload["custom_details"]["alerts"][0]["id"] == "errors" and payload["timestamp"].endswith("Z")
        print(f"\nPagerDuty events: {[e['event_action'] for e in events]} dedup_key={events[0]['dedup_key']}")


def test_a_new_episode_gets_a_new_dedup_key_and_severities_map_to_pagerduty(redis_db: redis.Redis) -> None:
    clock = FakeClock(paris(2026, 11, 30, 10))
    with Receiver() as pd:
        eng = engine(redis_db, clock, [PagerDutyChannel("R0UTINGKEY", pd.url)])
        for err in (0.5, 0.0, 0.5):
            eng.evaluate(report(err=err))
            clock.advance(30)
        keys = [q.json()["dedup_key"] for q in pd.requests]
        assert [q.json()["event_action"] for q in pd.requests] == ["trigger", "resolve", "trigger"]
        assert keys[0] == keys[1] != keys[2]
    assert PD_SEVERITY == {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


def test_an_unacked_critical_escalates_after_its_delay_and_an_acked_one_does_not(redis_db: redis.Redis) -> None:
    clock = FakeClock(paris(2026, 11, 30, 10))
    email, slack = RecordingChannel("email"), RecordingChannel("slack")
    eng = engine(redis_db, clock, [email, slack], QUIET)
    # Given a critical alert paged at t0 and nobody acknowledging it
    eng.evaluate(report(err=0.5))
    t0 = clock.now()
    assert [m.kind for m in slack.messages] == ["firing"] and email.messages == []  # email is not a first channel
    while clock.now() + 30 < t0 + 15 * 60:
        clock.advance(30)
        eng.evaluate(report(err=0.5))
    assert "escalation" not in [m.kind for m in email.messages]
    # When its 15-minute step passes
    clock.advance(t0 + 15 * 60 - clock.now())
    eng.evaluate(report(err=0.5))
    # Then the engineering manager is told, on the step's targets with their recipients
    (esc,) = [m for m in email.messages if m.kind == "escalation"]
    (slack_esc,) = [m for m in slack.messages if m.kind == "escalation"]
    assert esc.step == "engineering manager" and esc.recipients_for("email") == ("em@example.com",)
    assert esc.title.startswith("[CRITICAL] ESCALATION to engineering manager job_errors")
    assert [m.recipients_for("slack") for m in slack.messages if m.kind == "escalation"] == [("@eng-manager",)]
    assert SlackChannel.payload(slack_esc)["text"].startswith("@eng-manager [CRITICAL] ESCALATION")
    (step,) = history(redis_db, "escalated")
    assert step["alert_id"] == "errors" and step["to"] == "engineering manager" and step["level"] == 1
    assert step["unacknowledged_for_s"] == 900.0
    print(f"\nescalated after {step['unacknowledged_for_s']:.0f} s unacknowledged to {step['targets']}")
    # And it escalates once: the policy has one step
    clock.advance(3600)
    eng.evaluate(report(err=0.5))
    assert len(history(redis_db, "escalated")) == 1


def test_an_acked_critical_does_not_escalate(redis_db: redis.Redis) -> None:
    clock = FakeClock(paris(2026, 11, 30, 10))
    email = RecordingChannel("email")
    eng = engine(redis_db, clock, [email], QUIET)
    eng.evaluate(report(err=0.5))
    st = eng.store.get("errors")
    assert st is not None
    # Given the alert acknowledged 5 minutes in
    clock.advance(300)
    eng.store.ack(st, by="bob", comment="")
    # When an hour passes while it keeps firing
    for _ in range(120):
        clock.advance(30)
        eng.evaluate(report(err=0.5))
    # Then nobody was escalated to
    assert history(redis_db, "escalated") == [] and [m.kind for m in email.messages] == []


def test_a_medium_alert_at_night_arrives_in_the_morning_digest(redis_db: redis.Redis) -> None:
    # Given a Monday night in Paris (quiet hours: weekdays 09:00-18:00 local, below critical held)
    clock = FakeClock(paris(2026, 11, 30, 23, 10))
    slack, email, pd = RecordingChannel("slack"), RecordingChannel("email"), RecordingChannel("pagerduty")
    eng = engine(redis_db, clock, [slack, email, pd], QUIET)
    # When a latency alert fires and stays firing, and a queue alert fires and resolves, during the night
    eng.evaluate(report(p95=40, oldest=500))
    clock.advance(1800)
    eng.evaluate(report(p95=45, oldest=10))
    # And a critical fires at night too
    clock.advance(60)
    eng.evaluate(report(p95=45, err=0.5))
    # Then only the critical went out at night (it never waits), and the mediums are held
    assert [(m.kind, m.severity) for m in slack.messages] == [("firing", "critical")]
    assert email.messages == [] and [m.kind for m in pd.messages] == ["firing"]
    assert {a for e in history(redis_db, "held") for a in e["alerts"]} == {"latency", "queue"}
    # When the clock reaches 09:00 on Tuesday
    while clock.now() + 600 < paris(2026, 12, 1, 9, 0):
        clock.advance(600)
        eng.evaluate(report(p95=45, err=0.5))
    assert [m.kind for m in email.messages] == ["escalation"]  # the critical's, at night: critical never waits
    assert history(redis_db, "escalated")[0]["alert_id"] == "errors"
    clock.advance(paris(2026, 12, 1, 9, 0) - clock.now())
    eng.evaluate(report(p95=45, err=0.5))
    clock.advance(30)
    eng.evaluate(report(p95=45, err=0.5))
    # Then ONE digest arrives on the medium channels, saying which alert still fires and which resolved
    digests = [m for m in email.messages if m.kind == "digest"]
    assert len(digests) == 1 and [m.kind for m in slack.messages].count("digest") == 1
    assert [m.kind for m in pd.messages if m.kind == "digest"] == []
    states = {a.id: a.status for a in digests[0].alerts}
    assert states == {"latency": "firing", "queue": "resolved"}
    assert digests[0].title == "[MEDIUM] DIGEST: 2 alert(s) held during quiet hours"
    local = datetime.fromtimestamp(digests[0].created_at, tz=PARIS)
    print(f"\ndigest at {local:%a %H:%M} Europe/Paris: {states}")


def test_quiet_hours_follow_daylight_saving() -> None:
    policy = parse_paging({"quiet_hours": {"timezone": "Europe/Paris"}}, "x.toml")
    assert policy.quiet is not None
    # 08:30 UTC is 09:30 in Paris in winter (CET) and 10:30 in summer (CEST); 07:30 UTC is 08:30 / 09:30
    assert policy.quiet.is_business(datetime(2026, 1, 13, 8, 30, tzinfo=UTC).timestamp())
    assert not policy.quiet.is_business(datetime(2026, 1, 13, 7, 30, tzinfo=UTC).timestamp())
    assert policy.quiet.is_business(datetime(2026, 7, 14, 7, 30, tzinfo=UTC).timestamp())
    assert not policy.quiet.is_business(datetime(2026, 7, 18, 10, 0, tzinfo=UTC).timestamp())  # a Saturday


def test_sms_receiver_gets_the_twilio_form_with_basic_auth() -> None:
    clock = FakeClock(paris(2026, 11, 30, 10))
    with Receiver() as sms:
        channel = SmsChannel(sms.url.replace("/hook", "/2010-04-01/Accounts/{sid}/Messages.json"), "AC123",
                             "s3cr3t-token", "+15550001", ["+15550100", "+15550101"])
        alert = AlertView(id="errors", rule="errors", severity="critical", status="firing", new=True,
                          summary="error rate 50% " + "x" * 300, description="", value=0.5, labels={},
                          episode="e1", fired_at=clock.now())
        result = channel.send(Notification(id="msg_1", kind="firing", group="job_errors", severity="critical",
                                           created_at=clock.now(), alerts=(alert,)), 2.0)
        assert result.ok
        assert [q.path for q in sms.requests] == ["/2010-04-01/Accounts/AC123/Messages.json"] * 2
        first = sms.requests[0]
        form = parse_qs(first.body.decode())
        assert form["To"] == ["+15550100"] and form["From"] == ["+15550001"]
        body = form["Body"][0]
        assert body.startswith("[CRITICAL] FIRING job_errors: error rate 50%") and len(body) == 160
        assert first.headers["authorization"] == "Basic " + base64.b64encode(b"AC123:s3cr3t-token").decode()
        assert first.headers["content-type"] == "application/x-www-form-urlencoded"
        assert parse_qs(sms.requests[1].body.decode())["To"] == ["+15550101"]


def test_settings_build_the_paging_channels_and_reject_half_configurations() -> None:
    env = {"NANOEDIT_PAGERDUTY_ROUTING_KEY": "abc123routing", "NANOEDIT_SMS_URL": "https://sms.test/{sid}/M.json",
           "NANOEDIT_SMS_ACCOUNT_SID": "AC1", "NANOEDIT_SMS_AUTH_TOKEN": "tok3n-secret", "NANOEDIT_SMS_FROM": "+1",
           "NANOEDIT_SMS_TO": "+2, +3"}
    settings = Settings.from_env(env)
    assert settings.pagerduty_url == "https://events.pagerduty.com/v2/enqueue"
    names = [c.name for c in build_channels(settings)]
    assert names == ["log", "pagerduty", "sms"]
    assert "tok3n-secret" not in repr(settings) and "abc123routing" not in repr(settings)
    assert redact("sent with abc123routing and tok3n-secret", secrets_of(settings)) == (
        "sent with [REDACTED] and [REDACTED]")
    with pytest.raises(ChannelConfigError, match="NANOEDIT_SMS_AUTH_TOKEN"):
        build_channels(Settings.from_env({**env, "NANOEDIT_SMS_AUTH_TOKEN": ""}))
    with pytest.raises(ChannelConfigError, match="NANOEDIT_PAGERDUTY_URL"):
        build_channels(Settings.from_env({**env, "NANOEDIT_PAGERDUTY_URL": "ftp://x"}))


@pytest.mark.parametrize(("table", "named"), [
    ("[settings.escalation.urgent]\nfirst = ['slack']", "[settings.escalation] keys must be severities"),
    ("[settings.escalation.high]\nfirst = ['pager']", "settings.escalation.high.first: unknown channel 'pager'"),
    ("[settings.escalation.low]\nfirst = ['email']\nsteps = [{ after_min = -1, to = ['email'] }]",
     "settings.escalation.low.steps[1].after_min"),
    ("[settings.quiet_hours]\ntimezone = 'Mars/Olympus'", "settings.quiet_hours.timezone"),
    ("[settings.quiet_hours]\nstart = '9h'", "settings.quiet_hours.start"),
    ("[settings.quiet_hours]\nhold_below = 'warning'", "settings.quiet_hours.hold_below"),
])
def test_a_bad_paging_table_fails_start_up_naming_the_file_and_key(tmp_path: Path, table: str, named: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(table + "\n" + RULES)
    with pytest.raises(RulesError) as err:
        check_config(Settings.from_env({"NANOEDIT_ALERT_RULES": str(path)}))
    assert str(path) in str(err.value) and named in str(err.value)


def test_the_default_policies_follow_the_on_call_document(redis_db: redis.Redis) -> None:
    policy = load_paging(None)
    rows = {sev: ([t.channel for t in p.first], p.response_s / 60, [(s.after_s / 60, s.label) for s in p.steps])
            for sev, p in policy.policies.items()}
    assert rows == {"critical": (["pagerduty", "sms", "slack"], 15, [(15, "engineering manager")]),
                    "high": (["pagerduty", "slack", "email"], 60, [(60, "team lead")]),
                    "medium": (["slack", "email"], 240, [(240, "team lead")]),
                    "low": (["email"], 1440, [(1440, "team lead")])}
    assert policy.quiet is None  # quiet hours need a timezone: opt in in your rules file
    assert build_engine(Settings.from_env({}), redis_db, FakeClock()).pager is not None
    assert PagingPolicy().policies == policy.policies
