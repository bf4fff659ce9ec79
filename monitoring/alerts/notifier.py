"""The `Notifier`: sends one notification to every channel at once and records every attempt. It never raises.

Each channel runs in its own thread: attempts with a per-attempt timeout, retried with exponential backoff
(`backoff_s` doubling, capped) while the failure is retryable (no answer, timeout, 408/429/5xx), at most
`max_attempts`. A channel that hangs or fails only costs itself: the others deliver as soon as they can, and the
whole send returns within `budget_s` even if a channel ignores its timeout (its thread is abandoned and the
attempt recorded as given up). The `Clock` is injected (backoff sleeps, attempt timestamps and durations) so
tests never wait for backoff.
A message that names its routed channels (`Notification.channels`, set by the escalation policy) goes to those
plus every channel a policy does not route (the log, the signed webhook); a named channel that is not configured
is skipped, logged once per process.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace

from monitoring.alerts.channels import (
    Channel,
    EmailChannel,
    LogChannel,
    SendResult,
    SlackChannel,
    WebhookChannel,
)
from monitoring.alerts.channels_paging import PagerDutyChannel, SmsChannel
from monitoring.alerts.model import DeliveryAttempt, Notification
from monitoring.alerts.paging import ROUTED_CHANNELS
from shared.clock import Clock, SystemClock
from shared.settings import Settings

log = logging.getLogger("nanoedit.alerts")

TIMEOUT_S = 5.0
MAX_ATTEMPTS = 3
BACKOFF_S = 0.5
BACKOFF_CAP_S = 4.0


class Notifier:
    def __init__(self, channels: Sequence[Channel], *, timeout_s: float = TIMEOUT_S,
                 max_attempts: int = MAX_ATTEMPTS, backoff_s: float = BACKOFF_S, backoff_cap_s: float = BACKOFF_CAP_S,
                 clock: Clock | None = None) -> None:
        self.channels = list(channels)
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self.clock = clock or SystemClock()
        self._unconfigured_noted: set[str] = set()

    def route(self, message: Notification) -> list[Channel]:
        """The channels `message` goes to (see the module docstring)."""
        if message.channels is None:
            return list(self.channels)
        missing = set(message.channels) - {c.name for c in self.channels} - self._unconfigured_noted
        if missing:
            self._unconfigured_noted |= missing
            log.warning("alert policy names channels that are not configured; skipped",
                        extra={"channels": sorted(missing)})
        return [c for c in self.channels if c.name in message.channels or c.name not in ROUTED_CHANNELS]

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_cap_s, self.backoff_s * 2 ** (attempt - 1)))

    @property
    def budget_s(self) -> float:
        """The longest a send may take when every channel honours its timeout, plus a second of slack."""
        backoffs = sum(self.backoff(n) for n in range(1, self.max_attempts))
        return self.max_attempts * self.timeout_s + backoffs + 1.0

    def send_many(self, messages: Sequence[Notification]) -> list[Notification]:
        """Send several messages at once (one per group), so the whole batch takes one `budget_s` at most."""
        if len(messages) <= 1:
            return [self.send(m) for m in messages]
        with ThreadPoolExecutor(max_workers=len(messages), thread_name_prefix="nanoedit-alert-msg") as pool:
            return list(pool.map(self.send, messages))

    def send(self, message: Notification) -> Notification:
        """`message` with `deliveries` filled in: every attempt on every channel, in channel order."""
        channels = self.route(message)
        if not channels:
            return message
        pool = ThreadPoolExecutor(max_workers=len(channels), thread_name_prefix="nanoedit-alert")
        started, t0 = self.clock.now(), self.clock.monotonic()
        try:
            futures = [pool.submit(self._deliver, ch, message) for ch in channels]
            wait(futures, timeout=self.budget_s)
            attempts: list[DeliveryAttempt] = []
            for ch, fut in zip(channels, futures, strict=True):
                if fut.done() and fut.exception() is None:
                    attempts.extend(fut.result())
                else:  # still running past the budget (or crashed outside its own guard)
                    attempts.append(DeliveryAttempt(ch.name, 0, False, None, "gave up: no result within "
                                                    f"{self.budget_s:.0f} s", int((self.clock.monotonic() - t0) * 1000),
                                                    started))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        failed = sorted({a.channel for a in attempts} - {a.channel for a in attempts if a.ok})
        if failed:
            log.error("alert delivery failed", extra={"message_id": message.id, "channels": failed})
        return replace(message, deliveries=tuple(attempts))

    def _deliver(self, channel: Channel, message: Notification) -> list[DeliveryAttempt]:
        attempts: list[DeliveryAttempt] = []
        for n in range(1, self.max_attempts + 1):
            at = self.clock.now()
            t0 = self.clock.monotonic()
            try:
                result = channel.send(message, self.timeout_s)
            except Exception as exc:  # a channel must never break evaluation or the other channels
                result = SendResult(False, None, type(exc).__name__, retryable=True)
            attempts.append(DeliveryAttempt(channel.name, n, result.ok, result.status, result.error,
                                            int((self.clock.monotonic() - t0) * 1000), at))
            log.info("alert delivery attempt", extra={"message_id": message.id, "channel": channel.name,
                                                      "attempt": n, "ok": result.ok, "http_status": result.status,
                                                      "error": result.error})
            if result.ok or not result.retryable:
                break
            if n < self.max_attempts:
                self.clock.sleep(self.backoff(n))
        return attempts


def build_channels(settings: Settings, clock: Clock | None = None) -> list[Channel]:
    """Every configured channel; the log channel is always on. Raises ChannelConfigError on a bad config."""
    channels: list[Channel] = [LogChannel()]
    if settings.slack_webhook_url:
        channels.append(SlackChannel(settings.slack_webhook_url))
    if settings.alert_webhook_url or settings.alert_webhook_secret:
        channels.append(WebhookChannel(settings.alert_webhook_url, settings.alert_webhook_secret, clock=clock))
    if settings.smtp_url or settings.alert_email_to:
        to = [a.strip() for a in settings.alert_email_to.split(",") if a.strip()]
        channels.append(EmailChannel(settings.smtp_url, to))
    if settings.pagerduty_routing_key:
        channels.append(PagerDutyChannel(settings.pagerduty_routing_key, settings.pagerduty_url))
    if settings.sms_url or settings.sms_to:
        numbers = [n.strip() for n in settings.sms_to.split(",") if n.strip()]
        channels.append(SmsChannel(settings.sms_url, settings.sms_account_sid, settings.sms_auth_token,
                                   settings.sms_from, numbers))
    return channels


def build_notifier(settings: Settings, *, clock: Clock | None = None) -> Notifier:
    return Notifier(build_channels(settings, clock), clock=clock)
