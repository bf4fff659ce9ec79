"""The alert engine over real Redis with an injected clock: lifecycle, cooldowns, escalation, grouping, silences,
acks, insufficient data, the burn-rate rule, and two beats evaluating at once. Nothing here sleeps to test time.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
from standardwebhooks.webhooks import Webhook

from monitoring.alerts.channels import LogChannel, RecordingChannel, WebhookChannel
from monitoring.alerts.engine import AlertEngine
from monitoring.alerts.notifier import Notifier
from monitoring.alerts.rules import RuleSet, load_rules, parse_rules
from monitoring.alerts.silences import SilenceStore
from monitoring.alerts.store import AlertStore
from monitoring.baseline import BaselineTracker
from shared.clock import FakeClock, rfc3339
from tests.monitoring.test_report import make_reporter
from tests.support.receiver import Receiver
from tests.support.stack import RedisServer
from tests.workers.test_pipeline import StubProvider, make_ctx
from workers import maintenance

SECRET = "whsec_" + base64.b64encode(b"alert-webhook-secret-for-tests!!").decode()
T0 = 1_700_000_000.0

ERRORS = """
[settings]
group_interval_s = 120
[[rules]]
name = "errors"
group = "job_errors"
severity = "critical"
metric = "windows.5m.error_rate"
op = ">"
threshold = 0.10
for_s = 60
samples = "windows.5m.jobs_finished"
min_samples = 20
summary = "error rate {value:.0%} > {threshold:.0%}"
"""
ESCALATING = """
[[rules]]
name = "errors_medium"
group = "job_errors"
severity = "medium"
metric = "windows.5m.error_rate"
op = ">"
threshold = 0.05
summary = "error rate {value:.0%}"
[[rules]]
name = "errors_critical"
group = "job_errors"
severity = "critical"
metric = "windows.5m.error_rate"
op = ">"
threshold = 0.10
summary = "error rate {value:.0%}"
"""
WORKERS = """
[settings]
group_interval_s = 120
[[rules]]
name = "no_worker"
group = "workers"
severity = "critical"
metric = "queues.{queue}.live_workers"
op = "<"
threshold = 1
summary = "no worker for {queue}"
[[rules]]
name = "timeouts"
group = "timeouts"
severity = "high"
metric = "windows.5m.timeout_rate"
op = ">"
threshold = 0.02
summary = "timeouts {value:.0%}"
"""


StubChannel = RecordingChannel


def report(*, err5: float = 0.0, n5: int = 100, err1h: float = 0.0, n1h: int = 1000, timeouts: float = 0.0,
           live: dict[str, int] | None = None) -> dict[str, Any]:
    workers = live or {"preprocess": 1, "generate": 1}
    return {"windows": {"5m": {"jobs_finished": n5, "judged": n5, "error_rate": err5, "timeout_rate": timeouts},
                        "1h": {"jobs_finished": n1h, "judged": n1h, "error_rate": err1h, "timeout_rate": 0.0}},
            "queues": {q: {"depth": 0, "oldest_age_s": None, "live_workers": n} for q, n in workers.items()},
            "circuit": {"state": "closed"}, "beat": {"heartbeat_age_s": 3.0}}


def engine(r: redis.Redis, clock: FakeClock, rules: str | RuleSet, *channels: Any) -> AlertEngine:
    ruleset = parse_rules(rules, "test.toml") if isinstance(rules, str) else rules
    return AlertEngine(r, "t", clock, ruleset, Notifier(list(channels), timeout_s=2, clock=FakeClock()))


def run(eng: AlertEngine, clock: FakeClock, rep: dict[str, Any], *, until: float, every: float = 30) -> None:
    """Evaluate `rep` every `every` seconds until the clock reaches `until` (inclusive)."""
    while clock.now() <= until:
        eng.evaluate(rep)
        clock.advance(every)


def test_error_spike_fires_once_repeats_after_cooldown_and_resolves_once(redis_db: redis.Redis) -> None:
    clock = FakeClock(T0)
    with Receiver() as receiver:
        eng = engine(redis_db, clock, ERRORS, WebhookChannel(receiver.url, SECRET), LogChannel())
        # Given an error spike: pending until for_s (60 s) has passed by the clock, then firing
        eng.evaluate(report(err5=0.5))
        clock.advance(30)
        eng.evaluate(report(err5=0.5))
        assert receiver.requests == []
        clock.advance(30)
        fired = eng.evaluate(report(err5=0.5))
        # Then exactly one firing message reaches the receiver, signed per Standard Webhooks
        assert [m.kind for m in fired] == ["firing"] and len(receiver.requests) == 1
        first = receiver.requests[0]
        payload = Webhook(SECRET).verify(first.body, first.headers)
        assert payload["type"] == "alert.firing" and first.headers["webhook-id"] == fired[0].id
        assert payload["data"]["alerts"][0]["id"] == "errors" and payload["data"]["severity"] == "critical"
        assert payload["data"]["alerts"][0]["summary"] == "error rate 50% > 10%"
        assert fired[0].delivered == ["log", "webhook"]
        # When it keeps firing: nothing until the critical cooldown (5 min) has passed
        clock.advance(30)
        run(eng, clock, report(err5=0.5), until=T0 + 60 + 299)
        assert len(receiver.requests) == 1
        clock.advance(T0 + 60 + 300 - clock.now())
        assert [m.kind for m in eng.evaluate(report(err5=0.5))] == ["repeat"]
        assert len(receiver.requests) == 2
        # When errors stop: exactly one resolved message, then silence
        clock.advance(30)
        assert [m.kind for m in eng.evaluate(report(err5=0.0))] == ["resolved"]
        run(eng, clock, report(err5=0.0), until=clock.now() + 3600)
        kinds = [Webhook(SECRET).verify(r.body, r.headers)["type"] for r in receiver.requests]
        assert kinds == ["alert.firing", "alert.repeat", "alert.resolved"]
    history = AlertStore(redis_db, "t", clock).history(limit=100, alert_id="errors")
    events = [e["event"] for e in reversed(history)]
    assert events == ["pending", "firing", "notified", "notified", "resolved", "notified"]
    notified = next(e for e in history if e["event"] == "notified")
    assert notified["deliveries"][0]["ok"] and {d["channel"] for d in notified["deliveries"]} == {"log", "webhook"}


def test_insufficient_samples_never_fire_and_a_firing_alert_does_not_resolve_on_them(redis_db: redis.Redis) -> None:
    clock = FakeClock(T0)
    stub = StubChannel()
    eng = engine(redis_db, clock, ERRORS, stub)
    # Given 100 % errors but only 10 finished jobs (min_samples 20): never even pending
    run(eng, clock, report(err5=1.0, n5=10), until=T0 + 600)
    assert stub.messages == [] and AlertStore(redis_db, "t", clock).get("errors").state == "inactive"  # type: ignore[union-attr]
    # When enough samples arrive it fires; when traffic then stops it stays firing (no resolved on no evidence)
    run(eng, clock, report(err5=0.5), until=clock.now() + 60)
    run(eng, clock, report(err5=0.0, n5=3), until=clock.now() + 120)
    assert stub.kinds() == ["firing"]
    state = AlertStore(redis_db, "t", clock).get("errors")
    assert state is not None and state.state == "firing" and state.data == "insufficient"


def test_escalation_within_a_group_skips_the_cooldown(redis_db: redis.Redis) -> None:
    clock = FakeClock(T0)
    stub = StubChannel()
    eng = engine(redis_db, clock, ESCALATING, stub)
    # Given the medium alert fired (its cooldown is an hour)
    eng.evaluate(report(err5=0.07))
    clock.advance(30)
    eng.evaluate(report(err5=0.07))
    # When the error rate crosses the critical threshold 60 s later
    clock.advance(30)
    escalated = eng.evaluate(report(err5=0.12))
    # Then the critical alert goes out at once, in one message with the medium one
    assert [(m.kind, m.severity, m.escalated) for m in escalated] == [("firing", "critical", True)]
    assert [a.id for a in escalated[0].alerts] == ["errors_critical", "errors_medium"]
    assert escalated[0].alerts[0].new and not escalated[0].alerts[1].new
    # and the group now repeats on the critical cadence (5 min), not the medium one
    run(eng, clock, report(err5=0.12), until=T0 + 60 + 299)
    assert stub.kinds() == ["firing", "firing"]
    clock.advance(T0 + 60 + 300 - clock.now())
    assert [m.kind for m in eng.evaluate(report(err5=0.12))] == ["repeat"]
    # De-escalation: the critical alert resolves, the medium one keeps firing, one message says so
    clock.advance(30)
    (message,) = eng.evaluate(report(err5=0.07))
    assert message.kind == "resolved" and [(a.id, a.status) for a in message.alerts] == [
        ("errors_medium", "firing"), ("errors_critical", "resolved")]


def test_a_group_is_one_message_and_a_same_severity_newcomer_waits_for_the_group_interval(
        redis_db: redis.Redis) -> None:
    clock = FakeClock(T0)
    stub = StubChannel()
    eng = engine(redis_db, clock, WORKERS, stub)
    # Given both queues lose their workers and timeouts spike in the same evaluation
    sent = eng.evaluate(report(live={"preprocess": 0, "generate": 0}, timeouts=0.5))
    # Then one message per group: both queues in one, timeouts in another
    assert sorted((m.group, len(m.alerts)) for m in sent) == [("timeouts", 1), ("workers", 2)]
    # When a worker comes back (resolved goes out at once) and dies again 30 s later: a new episode
    clock.advance(30)
    assert [m.kind for m in eng.evaluate(report(live={"preprocess": 1, "generate": 0}, timeouts=0.5))] == [
        "resolved"]
    clock.advance(30)
    # Then it is held while the group's last message is younger than group_interval (120 s): no escalation
    run(eng, clock, report(live={"preprocess": 0, "generate": 0}, timeouts=0.5), until=T0 + 30 + 119)
    assert stub.kinds() == ["firing", "firing", "resolved"]
    clock.advance(T0 + 30 + 120 - clock.now())
    (joined,) = eng.evaluate(report(live={"preprocess": 0, "generate": 0}, timeouts=0.5))
    assert joined.group == "workers" and joined.kind == "firing" and not joined.escalated
    assert {(a.id, a.new) for a in joined.alerts} == {("no_worker:preprocess", True), ("no_worker:generate", False)}


def test_a_silence_suppresses_but_the_alert_still_changes_state(redis_db: redis.Redis) -> None:
    clock = FakeClock(T0)
    stub = StubChannel()
    eng = engine(redis_db, clock, ERRORS, stub)
    silences = SilenceStore(redis_db, "t", clock)
    # Given a silence on the group for 10 minutes
    silence = silences.create({"group": "job_*"}, ends_at=T0 + 600, comment="provider incident", created_by="ann")
    # When the spike fires and even repeats past the cooldown
    run(eng, clock, report(err5=0.5), until=T0 + 400)
    # Then nothing is sent, the alert fires anyway, and the history says it was silenced (once)
    store = AlertStore(redis_db, "t", clock)
    assert stub.messages == [] and store.get("errors").state == "firing"  # type: ignore[union-attr]
    silenced = [e for e in store.history(100) if e["event"] == "silenced"]
    assert len(silenced) == 1 and silenced[0]["silence_id"] == silence.id
    # When the silence is removed while it still fires, its firing message goes out then
    silences.delete(silence.id)
    assert [m.kind for m in eng.evaluate(report(err5=0.5))] == ["firing"]


def test_an_ack_stops_repeats_for_the_episode_but_not_the_resolved_message(redis_db: redis.Redis) -> None:
    clock = FakeClock(T0)
    stub = StubChannel()
    eng = engine(redis_db, clock, ERRORS, stub)
    store = AlertStore(redis_db, "t", clock)
    run(eng, clock, report(err5=0.5), until=T0 + 60)
    state = store.get("errors")
    assert state is not None and stub.kinds() == ["firing"]
    # When on-call acknowledges it
    store.ack(state, by="ann", comment="looking")
    run(eng, clock, report(err5=0.5), until=T0 + 3600)
    # Then no repeats, but the resolved message still goes out
    assert stub.kinds() == ["firing"]
    eng.evaluate(report(err5=0.0))
    assert stub.kinds() == ["firing", "resolved"]
    # and the next episode is not acknowledged: it fires and repeats again
    clock.advance(30)
    run(eng, clock, report(err5=0.5), until=clock.now() + 60 + 300)
    assert stub.kinds() == ["firing", "resolved", "firing", "repeat"]


def test_burn_rate_fires_only_when_both_windows_burn(redis_db: redis.Redis) -> None:
    defaults = load_rules(None)
    burn = defaults.rule("job_error_budget_burn")
    assert burn is not None
    clock = FakeClock(T0)
    stub = StubChannel()
    eng = engine(redis_db, clock, replace(defaults, rules=(burn,)), stub)
    # Only the long window burning (an old incident), or only the short one (a blip): no page
    run(eng, clock, report(err1h=0.20, err5=0.01), until=T0 + 600)
    run(eng, clock, report(err1h=0.01, err5=0.30), until=clock.now() + 600)
    assert stub.messages == []
    # Both windows over 14.4 × the 1 % budget: critical page at once
    (page,) = eng.evaluate(report(err1h=0.15, err5=0.30))
    assert page.severity == "critical" and page.alerts[0].id == "job_error_budget_burn"
    assert page.alerts[0].summary.startswith("Error budget burning 14.4× too fast: error rate 15.0% over 1 h")


def test_default_rules_evaluate_a_real_health_report_without_path_errors(redis_db: redis.Redis) -> None:
    clock = FakeClock(T0)
    rep = make_reporter(redis_db, clock).build()  # no workers, no beat, no traffic
    BaselineTracker(redis_db, "t", clock).annotate(rep, load_rules(None))  # as the report task does
    stub = StubChannel()
    eng = engine(redis_db, clock, load_rules(None), stub)
    run(eng, clock, rep, until=T0 + 90)
    store = AlertStore(redis_db, "t", clock)
    assert [e for e in store.history(500) if e["event"] == "rule_error"] == []
    firing = sorted(a.id for m in stub.messages for a in m.alerts)
    assert firing == ["beat_heartbeat_missing", "no_live_worker:generate", "no_live_worker:preprocess",
                      "no_live_worker:webhooks"]


def test_two_beats_evaluating_at_once_send_one_notification(redis_server: RedisServer, redis_db: redis.Redis) -> None:
    clock = FakeClock(T0)
    with Receiver(delay_s=0.3) as receiver:  # slow answers: the two evaluations overlap
        engines = [engine(redis.Redis.from_url(redis_server.url(1), decode_responses=True), clock, ERRORS,
                          WebhookChannel(receiver.url, SECRET)) for _ in range(2)]
        rep = report(err5=0.5)
        for at in (T0, T0 + 60, T0 + 90, T0 + 360):
            clock.advance(at - clock.now())
            barrier = threading.Barrier(2)

            def beat(e: AlertEngine, barrier: threading.Barrier) -> None:
                barrier.wait()
                e.evaluate(rep)

            threads = [threading.Thread(target=beat, args=(e, barrier)) for e in engines]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
        types = [Webhook(SECRET).verify(r.body, r.headers)["type"] for r in receiver.requests]
    assert types == ["alert.firing", "alert.repeat"]


def test_beat_health_report_evaluates_alerts_and_a_broken_engine_never_costs_the_report(
        redis_db: redis.Redis, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    ctx = make_ctx(redis_db, clock, StubProvider())
    ctx.enqueuer.queue_depths = lambda: {"preprocess": 0, "generate": 0}  # type: ignore[attr-defined]
    # Given no workers and no beat heartbeat: after for_s (60 s) the default rules fire
    maintenance.health_report(ctx)
    clock.advance(61)
    redis_db.delete("t:report:lock")  # its expiry runs on Redis's clock, not the fake one
    result = maintenance.health_report(ctx)
    assert result["notifications"] == 2  # "workers" (every pool) and "beat": one message per group
    firing = {k for k, v in AlertStore(redis_db, "t", clock).states().items() if v.state == "firing"}
    assert firing == {"no_live_worker:preprocess", "no_live_worker:generate", "no_live_worker:webhooks",
                      "beat_heartbeat_missing"}
    # When the rules file breaks at run time, the report is still built and stored
    bad = tmp_path / "rules.toml"
    bad.write_text("not toml [")
    clock.advance(61)
    redis_db.delete("t:report:lock")
    broken = maintenance.health_report(replace(ctx, settings=ctx.settings.with_(alert_rules=str(bad))))
    assert broken["notifications"] == "error" and broken["generated_at"] == rfc3339(clock.now())
