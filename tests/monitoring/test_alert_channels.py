"""Alert channels and the notifier against real local servers: retries with backoff, a hanging channel that
neither blocks nor delays the others, Standard Webhooks signatures, Slack payloads and SMTP email."""

from __future__ import annotations

import base64
import time
from dataclasses import replace
from email import message_from_bytes
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from monitoring.alerts.channels import (
    ChannelConfigError,
    EmailChannel,
    LogChannel,
    SendResult,
    SlackChannel,
    WebhookChannel,
)
from monitoring.alerts.model import AlertView, Notification
from monitoring.alerts.notifier import Notifier, build_channels
from shared.clock import FakeClock
from shared.settings import Settings
from tests.support.receiver import Receiver
from tests.support.stack import free_port

SECRET = "whsec_" + base64.b64encode(b"alert-webhook-secret-for-tests!!").decode()


def message(kind: str = "firing") -> Notification:
    alert = AlertView(id="job_error_rate_critical", rule="job_error_rate_critical", severity="critical",
                      status="firing", new=True, summary="Job error rate is 12.0% (> 10%)",
                      description="See errors_by_code.", value=0.12, labels={}, episode="ep1",
                      fired_at=1_700_000_000.0)
    return Notification(id="msg_abc123", kind=kind, group="job_errors", severity="critical",
                        created_at=1_700_000_000.0, alerts=(alert,))


class Sleeps(FakeClock):
    """A fake clock that records every sleep (backoff) the notifier asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.calls.append(seconds)
        super().sleep(seconds)


def test_a_500_is_retried_with_backoff_and_then_delivered_with_the_same_webhook_id() -> None:
    sleeps = Sleeps()
    with Receiver([500, 200]) as receiver:
        notifier = Notifier([WebhookChannel(receiver.url, SECRET)], timeout_s=2, clock=sleeps)

        sent = notifier.send(message())

        assert [(d.attempt, d.ok, d.status) for d in sent.deliveries] == [(1, False, 500), (2, True, 200)]
        assert sent.deliveries[0].error == "HTTP 500" and sent.delivered == ["webhook"]
        assert sleeps.calls == [0.5]
        assert [r.headers["webhook-id"] for r in receiver.requests] == ["msg_abc123", "msg_abc123"]
        for r in receiver.requests:
            body = Webhook(SECRET).verify(r.body, r.headers)
            assert body["type"] == "alert.firing" and body["data"]["alerts"][0]["value"] == 0.12


def test_a_4xx_answer_is_final_and_retries_are_bounded() -> None:
    with Receiver([404, 503, 503, 503, 503]) as receiver:
        once = Notifier([SlackChannel(receiver.url)], timeout_s=2, clock=FakeClock()).send(message())
        bounded = Notifier([SlackChannel(receiver.url)], timeout_s=2, max_attempts=3,
                           clock=FakeClock()).send(message())

    assert [d.status for d in once.deliveries] == [404]
    assert [d.status for d in bounded.deliveries] == [503, 503, 503] and bounded.delivered == []


def test_a_hanging_channel_is_retried_recorded_as_failed_and_does_not_delay_a_healthy_one() -> None:
    with Receiver(["hang", "hang"], hang_s=5) as hanging, Receiver() as healthy:
        notifier = Notifier([WebhookChannel(hanging.url, SECRET), SlackChannel(healthy.url)], timeout_s=0.4,
                            max_attempts=2, clock=FakeClock())
        started = time.monotonic()

        sent = notifier.send(message())

        took = time.monotonic() - started
        assert [(d.channel, d.attempt, d.ok, d.error) for d in sent.deliveries] == [
            ("webhook", 1, False, "ReadTimeout"), ("webhook", 2, False, "ReadTimeout"), ("slack", 1, True, "")]
        assert len(hanging.requests) == 2
        # the healthy channel got its message right away, long before the first timeout
        assert healthy.requests[0].at - started < 0.3
        assert took < notifier.budget_s


def test_messages_of_several_groups_share_one_budget() -> None:
    with Receiver(["hang"] * 4, hang_s=5) as hanging:
        notifier = Notifier([WebhookChannel(hanging.url, SECRET), LogChannel()], timeout_s=0.4, max_attempts=1,
                            clock=FakeClock())
        started = time.monotonic()

        sent = notifier.send_many([replace(message(), id=f"msg_{i}", group=f"g{i}") for i in range(4)])

        assert time.monotonic() - started < 1.2  # not 4 × 0.4 s one after the other
        assert [m.delivered for m in sent] == [["log"]] * 4 and len(hanging.requests) == 4


def test_a_channel_that_ignores_its_timeout_is_abandoned_within_the_budget() -> None:
    class Stuck:
        name = "stuck"

        def send(self, message: Notification, timeout_s: float) -> SendResult:
            time.sleep(2)  # past the 1.1 s budget
            return SendResult(True)

    notifier = Notifier([Stuck(), LogChannel()], timeout_s=0.1, max_attempts=1, clock=FakeClock())
    started = time.monotonic()

    sent = notifier.send(message())

    assert time.monotonic() - started < 2.5
    assert sent.delivered == ["log"]
    assert next(d for d in sent.deliveries if d.channel == "stuck").error.startswith("gave up")


def test_a_crashing_channel_is_recorded_and_never_raises() -> None:
    class Broken:
        name = "broken"

        def send(self, message: Notification, timeout_s: float) -> SendResult:
            raise RuntimeError("boom https://hooks.example/secret-token")

    sent = Notifier([Broken(), LogChannel()], max_attempts=2, clock=FakeClock()).send(message())

    assert [(d.channel, d.ok, d.error) for d in sent.deliveries] == [
        ("broken", False, "RuntimeError"), ("broken", False, "RuntimeError"), ("log", True, "")]


def test_slack_gets_text_and_blocks() -> None:
    with Receiver() as receiver:
        sent = Notifier([SlackChannel(receiver.url)], clock=FakeClock()).send(message("resolved"))
        body: dict[str, Any] = receiver.requests[0].json()

    assert sent.delivered == ["slack"]
    assert body["text"].startswith("[CRITICAL] RESOLVED job_errors: Job error rate is 12.0%")
    assert [b["type"] for b in body["blocks"]] == ["section", "section", "context"]
    assert "job_error_rate_critical" in body["blocks"][1]["text"]["text"]


def test_email_is_sent_over_smtp() -> None:
    from aiosmtpd.controller import Controller  # lazy: a test-only dependency

    class Inbox:
        def __init__(self) -> None:
            self.mails: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.mails.append(envelope)
            return "250 OK"

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        channel = EmailChannel(f"smtp://127.0.0.1:{port}?from=alerts@nanoedit.test", ["oncall@example.com"])
        sent = Notifier([channel], timeout_s=5, clock=FakeClock()).send(message())
    finally:
        controller.stop()

    assert sent.delivered == ["email"]
    (envelope,) = inbox.mails
    assert envelope.mail_from == "alerts@nanoedit.test" and envelope.rcpt_tos == ["oncall@example.com"]
    mail = message_from_bytes(envelope.content)
    assert mail["Subject"].startswith("[CRITICAL] FIRING job_errors")
    assert "job_error_rate_critical" in mail.get_payload()


def test_channels_are_built_from_settings_with_log_always_on() -> None:
    assert [c.name for c in build_channels(Settings())] == ["log"]
    full = Settings(slack_webhook_url="https://hooks.slack.test/x", alert_webhook_url="https://example.test/a",
                    alert_webhook_secret=SECRET, smtp_url="smtps://u:p%40ss@mail.test", alert_email_to="a@x, b@x")
    channels = build_channels(full)
    assert [c.name for c in channels] == ["log", "slack", "webhook", "email"]
    email = channels[3]
    assert isinstance(email, EmailChannel)
    assert (email.port, email.ssl, email.password, email.to) == (465, True, "p@ss", ["a@x", "b@x"])
    assert EmailChannel("smtp://mail.test:587", ["a@x"]).starttls
    with pytest.raises(ChannelConfigError, match="whsec_"):
        build_channels(Settings(alert_webhook_url="https://example.test/a", alert_webhook_secret="not base64!"))
