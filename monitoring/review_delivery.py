"""Delivery of the weekly and monthly reviews (monitoring/periodic.py) to the Slack and email channels, once per
period, on schedule.

Beat runs `ReviewDelivery.deliver_due` every few minutes (workers/maintenance.py `reviews`); with the injected
clock it decides what is due: the last closed period, from `DELAY_S` after it closed (Monday 00:10 UTC for the
week, the 1st 00:10 for the month; by then beat has written the last day's summary). Only the latest closed
period is ever sent, so a beat that was down for weeks does not send a backlog.

At most once per period and channel: before sending, a run claims `{prefix}:review:sent:{kind}:{period_id}:
{channel}` (one Lua script: free, or a claim older than `RETRY_AFTER_S` by the injected clock); a delivered
review turns the claim into the marker `sent`, a failed one leaves its claim to lapse so a later run tries
again. A send that succeeded in a process that died before writing the marker can be repeated once; concurrent
runs never send one review twice. Owns those keys.

The channel objects are the alert channels' own (monitoring/alerts: Slack webhook URL, SMTP URL and recipients,
parsed and checked there), but `Channel.send` renders an alert notification; a review is a document, so its text
is sent here through the same endpoint, one attempt per run (the marker's lapse is the retry).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import redis
import requests

from monitoring.alerts.channels import USER_AGENT, EmailChannel, SlackChannel
from monitoring.alerts.notifier import build_channels
from monitoring.periodic import PERIOD_KINDS, Period, ReviewBuilder, period_containing, render_text
from shared.clock import Clock
from shared.settings import Settings

log = logging.getLogger("nanoedit.reviews")

DELAY_S = 600  # 00:10 UTC after the period closed
RETRY_AFTER_S = 600  # a failed channel is tried again this long after its claim
SENT_KEEP_S = 70 * 86400  # longer than a month plus the delay: a marker outlives the time its period is due
SEND_TIMEOUT_S = 10.0
# KEYS[1] marker; ARGV: now, retry_after_s, keep_s. 1 = claimed for this run, 0 = sent already or claimed recently.
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, 8) ~= 'claimed:' then return 0 end
  local at = tonumber(string.sub(v, 9))
  if at and tonumber(ARGV[1]) - at < tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], 'claimed:' .. ARGV[1], 'EX', ARGV[3])
return 1
"""
ReviewChannel = SlackChannel | EmailChannel


def review_channels(settings: Settings, clock: Clock | None = None) -> list[ReviewChannel]:
    """The configured Slack and email channels (the others — log, webhook, paging — do not get reviews)."""
    return [c for c in build_channels(settings, clock) if isinstance(c, SlackChannel | EmailChannel)]


def send_review(channel: ReviewChannel, subject: str, text: str, timeout_s: float) -> None:
    """One attempt; raises on any failure (HTTP status outside 2xx, SMTP error, network)."""
    if isinstance(channel, SlackChannel):
        payload = {"text": subject, "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{subject}*"[:3000]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"```{text[:2900]}```"}}]}
        resp = channel.session.post(channel.url, json=payload, timeout=timeout_s, allow_redirects=False,
                                    headers={"User-Agent": USER_AGENT})
        if not 200 <= resp.status_code < 300:
            raise requests.HTTPError(f"HTTP {resp.status_code}")
        return
    mail = EmailMessage()
    mail["Subject"], mail["From"], mail["To"] = subject[:200], channel.sender, ", ".join(channel.to)
    mail.set_content(text)
    channel.submit(mail, timeout_s)


@dataclass(slots=True)
class ReviewDelivery:
    r: redis.Redis
    prefix: str
    clock: Clock
    builder: ReviewBuilder
    channels: Sequence[ReviewChannel]
    timeout_s: float = SEND_TIMEOUT_S

    def _marker(self, period: Period, channel: str) -> str:
        return f"{self.prefix}:review:sent:{period.kind}:{period.id}:{channel}"

    def due(self, kind: str) -> Period:
        """The last period of `kind` whose delivery time has come."""
        shifted = datetime.fromtimestamp(self.clock.now() - DELAY_S, tz=UTC).date()
        return period_containing(kind, shifted).previous()

    def delivered(self, period: Period, channel: str) -> bool:
        return self.r.get(self._marker(period, channel)) == "sent"

    def _claim(self, period: Period, channel: str) -> bool:
        args = (repr(self.clock.now()), RETRY_AFTER_S, SENT_KEEP_S)
        return bool(self.r.eval(_CLAIM, 1, self._marker(period, channel), *args))

    def deliver_due(self) -> dict[str, Any]:
        """Send every due review not yet delivered to each channel.

        Returns {kind: {"period_id", "sent": [channel...], "retry_later": [channel...]}} for the kinds it tried."""
        out: dict[str, Any] = {}
        for kind in PERIOD_KINDS:
            period = self.due(kind)
            todo = [c for c in self.channels if self._claim(period, c.name)]
            if not todo:
                continue
            review = self.builder.build(period)
            subject = f"nanoedit {kind} review {period.id}"
            text = render_text(review)
            sent, retry_later = [], []
            for channel in todo:
                try:
                    send_review(channel, subject, text, self.timeout_s)
                except Exception as exc:  # one channel's failure never costs the others; retried after the lapse
                    retry_later.append(channel.name)
                    log.warning("review delivery failed", extra={"period": period.id, "channel": channel.name,
                                                                 "error": type(exc).__name__})
                    continue
                self.r.set(self._marker(period, channel.name), "sent", ex=SENT_KEEP_S)
                sent.append(channel.name)
                log.info("review delivered", extra={"period": period.id, "channel": channel.name})
            out[kind] = {"period_id": period.id, "sent": sent, "retry_later": retry_later}
        return out
