"""Weekly and monthly reviews from the daily summaries, and their delivery once per period (real Redis, fake clock,
a local Slack-shaped receiver and a local SMTP server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from typing import Any

import pytest
import redis

from monitoring.alerts.channels import EmailChannel, SlackChannel
from monitoring.periodic import MONTHLY, WEEKLY, Period, PeriodError, ReviewBuilder
from monitoring.report import HealthReporter
from monitoring.review_delivery import RETRY_AFTER_S, ReviewDelivery
from monitoring.sketch import Histogram, bucket_of
from shared.clock import FakeClock
from shared.jobs.options import Usage
from shared.usage_ledger import UsageLedger
from tests.monitoring.test_report import make_reporter
from tests.support.receiver import Receiver
from tests.support.stack import free_port

PREVIOUS_WEEK = date(2026, 11, 16)  # Monday of 2026-W47
WEEK = date(2026, 11, 23)  # Monday of 2026-W48


def at(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC).timestamp()


def move_to(clock: FakeClock, ts: float) -> None:
    assert ts >= clock.now(), "the test's clock only moves forward"
    clock.advance(ts - clock.now())


def run_day(rep: HealthReporter, clock: FakeClock, day: date, jobs: list[tuple[int, str | None, float]],
            cost_usd: float) -> None:
    """Given `day`: jobs finish at the given UTC hours (error code or None, latency), calls are billed; then beat
    writes the day's summary just after midnight, as workers/maintenance.py health_report does."""
    ledger = UsageLedger(rep.r, rep.prefix, clock)
    for n, (hour, code, latency) in enumerate(sorted(jobs, key=lambda job: job[0])):
        move_to(clock, max(clock.now(), at(day, hour, n % 60)))
        rep.recorder.job_finished(f"{day}-{n}", status="failed" if code else "succeeded", error_code=code,
                                  latency_s=latency)
    if cost_usd:
        move_to(clock, max(clock.now(), at(day, 12)))
        ledger.record("owner-a", Usage(total_tokens=10), cost_usd / 2)
        ledger.record("owner-b", Usage(total_tokens=10), cost_usd / 2)
    move_to(clock, at(day + timedelta(days=1), 0, 0, 30))
    if not rep.has_daily(day.isoformat()):
        rep.daily(day.isoformat())


def test_week_and_month_ids_name_the_right_days() -> None:
    # ISO weeks: 2026-W01 starts in 2025; 2026 has a week 53, 2025 has none
    assert Period.parse(WEEKLY, "2026-W01").first == date(2025, 12, 29)
    assert Period.parse(WEEKLY, "2026-W53").last == date(2027, 1, 3)
    assert Period.parse(WEEKLY, "2026-W48").previous().id == "2026-W47"
    assert Period.parse(MONTHLY, "2026-02").last == date(2026, 2, 28)
    assert Period.parse(MONTHLY, "2026-01").previous().id == "2025-12"
    for kind, bad in ((WEEKLY, "2025-W53"), (WEEKLY, "2026-W00"), (MONTHLY, "2026-13"), (MONTHLY, "2026-W01")):
        with pytest.raises(PeriodError):
            Period.parse(kind, bad)


def test_weekly_review_is_the_sum_of_its_days_with_the_trend_against_the_week_before(
        redis_db: redis.Redis) -> None:
    clock = FakeClock(at(PREVIOUS_WEEK))
    rep = make_reporter(redis_db, clock)
    latencies: list[float] = []
    # Given a quiet previous week: 2 good jobs a day, 0.50 USD a day
    for d in range(7):
        run_day(rep, clock, PREVIOUS_WEEK + timedelta(days=d), [(9, None, 2.0), (10, None, 2.0)], 0.5)
    # and a busier week: day d has d+1 good jobs at 14:00, and every other day a timeout at 03:00 and a blocked
    # image at 14:00; cost 0.1·(d+1) USD
    for d in range(7):
        jobs: list[tuple[int, str | None, float]] = [(14, None, 1.0 + d + n / 10) for n in range(d + 1)]
        if d % 2 == 0:
            jobs += [(3, "upstream_timeout", 60.0), (14, "content_blocked", 1.5)]
        latencies += [lat for _, _, lat in jobs]
        run_day(rep, clock, WEEK + timedelta(days=d), jobs, round(0.1 * (d + 1), 2))

    # When on-call reads that week's review on the Monday after
    review = ReviewBuilder(rep, clock).build(Period.parse(WEEKLY, "2026-W48"))

    # Then every total is the sum of its days
    days = [rep.daily((WEEK + timedelta(days=d)).isoformat()) for d in range(7)]
    totals = review["totals"]
    assert review["complete"] is True and review["days_covered"] == 7 and review["days_missing"] == []
    assert totals["jobs_finished"] == sum(d["jobs_finished"] for d in days) == 28 + 8
    codes: dict[str, int] = {}
    for d in days:
        for code, n in d["errors_by_code"].items():
            codes[code] = codes.get(code, 0) + n
    assert totals["errors_by_code"] == codes == {"upstream_timeout": 4, "content_blocked": 4}
    assert totals["cost_usd"] == round(sum(d["cost_usd"] for d in days), 6) == 2.8
    assert totals["jobs_by_hour_utc"][14] == 32 and totals["jobs_by_hour_utc"][3] == 4
    # and the percentiles come from the merged histograms, not from averaging the days'
    merged = Histogram.merge([{bucket_of(v): 1} for v in latencies])
    assert totals["job_latency_s"]["samples"] == len(latencies) == 36
    assert totals["job_latency_s"]["p95"] == round(merged.quantile(0.95) or 0, 3)
    # and the trend against the week before is right
    jobs_trend = review["trends"]["jobs_finished"]
    assert jobs_trend == {"current": 36.0, "previous": 14.0, "change": 22.0, "change_pct": 157.1}
    assert review["trends"]["cost_usd"]["previous"] == 3.5
    assert review["trends"]["error_rate"]["previous"] == 0.0
    # and the SLO, top codes and busiest hours are what happened
    assert review["slo"]["days_judged"] == 7 and review["slo"]["days_meeting"] == 3  # the odd days, no timeout
    assert review["slo"]["met"] is False
    assert [c["code"] for c in review["top_error_codes"]] == ["content_blocked", "upstream_timeout"]
    assert [h["hour"] for h in review["busiest_hours_utc"]] == [14, 3]


def test_current_period_is_incomplete_and_missing_days_are_listed_not_invented(redis_db: redis.Redis) -> None:
    clock = FakeClock(at(WEEK))
    rep = make_reporter(redis_db, clock)
    # Given Monday and Tuesday of this week ran; the previous week's summaries were never written
    run_day(rep, clock, WEEK, [(8, None, 1.0)], 0.0)
    run_day(rep, clock, WEEK + timedelta(days=1), [(8, None, 1.0), (9, None, 1.0)], 0.0)
    move_to(clock, at(WEEK + timedelta(days=2), 11))  # Wednesday morning
    rep.recorder.job_finished("wed", status="succeeded", error_code=None, latency_s=1.0)

    # When the current week and month are asked for
    builder = ReviewBuilder(rep, clock)
    week = builder.build(builder.current(WEEKLY))
    month = builder.build(builder.current(MONTHLY))

    # Then they cover the days so far, say they are not complete, and list the days without a summary
    assert week["period_id"] == "2026-W48" and week["complete"] is False
    assert week["days_covered"] == 3 and week["totals"]["jobs_finished"] == 4
    assert week["previous"]["days_missing"] == [(PREVIOUS_WEEK + timedelta(days=d)).isoformat()
                                                for d in range(7)]
    assert month["period_id"] == "2026-11" and month["complete"] is False
    assert month["days_covered"] == 3 and len(month["days_missing"]) == 22


class Inbox:
    def __init__(self) -> None:
        self.mails: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(envelope)
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    from aiosmtpd.controller import Controller  # lazy: a test-only dependency

    box, port = Inbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def subjects(box: Inbox) -> list[str]:
    return [str(message_from_bytes(m.content)["Subject"]) for m in box.mails]


def test_reviews_are_delivered_once_per_period_to_slack_and_email(redis_db: redis.Redis,
                                                                   inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    clock = FakeClock(at(WEEK + timedelta(days=6), 23, 59))  # Sunday night, end of 2026-W48
    rep = make_reporter(redis_db, clock)
    # the weeks and the month before were already delivered
    for kind, pid in ((WEEKLY, "2026-W47"), (MONTHLY, "2026-10")):
        for channel in ("slack", "email"):
            redis_db.set(f"t:review:sent:{kind}:{pid}:{channel}", "sent")
    with Receiver([500]) as slack:
        channels = [SlackChannel(slack.url), EmailChannel(f"smtp://127.0.0.1:{port}?from=r@nanoedit.test",
                                                          ["oncall@example.com"])]
        delivery = ReviewDelivery(redis_db, "t", clock, ReviewBuilder(rep, clock), channels, timeout_s=5)

        # Given the week has not ended: nothing is due
        assert delivery.deliver_due() == {}
        # When Monday 00:10 comes, the week's review goes out: email delivered, Slack answers 500 once
        move_to(clock, at(date(2026, 11, 30), 0, 10))
        first = delivery.deliver_due()
        assert first == {"weekly": {"period_id": "2026-W48", "sent": ["email"], "retry_later": ["slack"]}}
        # Then a run a minute later sends nothing (the failed claim has not lapsed), one after the lapse retries
        # Slack only, and later runs send nothing again
        clock.advance(60)
        assert delivery.deliver_due() == {}
        clock.advance(RETRY_AFTER_S)
        assert delivery.deliver_due() == {"weekly": {"period_id": "2026-W48", "sent": ["slack"],
                                                     "retry_later": []}}
        clock.advance(3600)
        assert delivery.deliver_due() == {}
        # and on the 1st at 00:10 the month's review goes out, once
        move_to(clock, at(date(2026, 12, 1), 0, 10))
        assert delivery.deliver_due() == {"monthly": {"period_id": "2026-11", "sent": ["slack", "email"],
                                                      "retry_later": []}}
        assert delivery.deliver_due() == {}
        bodies = [r.json() for r in slack.requests]

    assert subjects(box) == ["nanoedit weekly review 2026-W48", "nanoedit monthly review 2026-11"]
    assert [b["text"] for b in bodies] == ["nanoedit weekly review 2026-W48"] * 2 + ["nanoedit monthly review 2026-11"]
    text = message_from_bytes(box.mails[0].content).get_payload()
    assert "jobs_finished" in text and "SLO 99 % good jobs" in text


def test_beat_task_sends_through_the_configured_channels_only(redis_db: redis.Redis) -> None:
    from dataclasses import replace

    from tests.workers.test_pipeline import StubProvider, make_ctx
    from workers import maintenance

    clock = FakeClock(at(date(2026, 11, 30), 0, 10))
    ctx = make_ctx(redis_db, clock, StubProvider())
    ctx.enqueuer.queue_depths = lambda: {}  # type: ignore[attr-defined]
    # Given no Slack and no email configured: nothing to send to
    assert "skipped" in maintenance.reviews(ctx)
    # Given a Slack webhook: last week's and last month's reviews go out once
    with Receiver() as slack:
        ctx = replace(ctx, settings=ctx.settings.with_(slack_webhook_url=slack.url))
        first = maintenance.reviews(ctx)
        again = maintenance.reviews(ctx)
        texts = sorted(r.json()["text"] for r in slack.requests)
    assert first["weekly"]["sent"] == ["slack"] and first["monthly"]["sent"] == ["slack"]
    assert again == {}
    assert texts == ["nanoedit monthly review 2026-10", "nanoedit weekly review 2026-W48"]
