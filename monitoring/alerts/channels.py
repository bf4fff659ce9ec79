"""Alert channels: where a notification goes. Each channel makes exactly one attempt per `send` and reports how it
went; retries, timeouts across channels and recording attempts are the `Notifier`'s job.

- `SlackChannel`: a Slack-compatible incoming webhook (JSON with "text" plus simple mrkdwn blocks).
- `WebhookChannel`: a generic JSON POST signed per the Standard Webhooks spec with the `standardwebhooks` library
  (headers webhook-id / webhook-timestamp / webhook-signature; the id is the notification id, stable across
  retries so receivers can de-duplicate).
- `EmailChannel`: plain-text mail over SMTP (`smtp://user:pass@host:port`; `smtps://` is implicit TLS, port 587
  or `?starttls=1` upgrades with STARTTLS; `?from=addr` sets the sender).
- `LogChannel`: one JSON log line; always configured, so every notification leaves a trace.
PagerDuty and SMS are in `channels_paging.py`. A message's per-channel recipients (escalation targets, see
`paging.py`) override the configured Slack mention / email recipients.
Error strings never include exception text (a Slack URL is itself a secret), only the exception type and status.
"""

from __future__ import annotations

import json
import logging
import smtplib
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from standardwebhooks.webhooks import Webhook

from monitoring.alerts.model import FIRING, Notification
from shared.clock import Clock, SystemClock, rfc3339
from shared.errors import ConfigError

USER_AGENT = "nanoedit-alerts/1"
log = logging.getLogger("nanoedit.alerts")


class ChannelConfigError(ConfigError):
    """An alert channel is configured wrongly (fails start-up)."""


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    status: int | None = None
    error: str = ""
    retryable: bool = True


class Channel(Protocol):
    name: str

    def send(self, message: Notification, timeout_s: float) -> SendResult:
        """One delivery attempt; may raise (the notifier records it as a retryable failure)."""
        ...


def render_text(message: Notification) -> str:
    """The human-readable body shared by Slack and email."""
    lines = [message.title, ""]
    for a in message.alerts:
        state = "RESOLVED" if a.status != FIRING else ("NEW" if a.new else "FIRING")
        ack = f" (acknowledged by {a.acked_by})" if a.acked_by else ""
        lines.append(f"• {state} [{a.severity}] {a.id}: {a.summary}{ack}")
        if a.description and a.status == FIRING:
            lines.append(f"    {a.description}")
    lines += ["", f"message {message.id} at {rfc3339(message.created_at)}"]
    return "\n".join(lines)


def _http_result(resp: requests.Response) -> SendResult:
    status = resp.status_code
    if 200 <= status < 300:
        return SendResult(True, status)
    return SendResult(False, status, f"HTTP {status}", retryable=status in (408, 429) or status >= 500)


class SlackChannel:
    name = "slack"

    def __init__(self, url: str, session: requests.Session | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ChannelConfigError("NANOEDIT_SLACK_WEBHOOK_URL must be an http(s) URL")
        self.url = url
        self.session = session or requests.Session()

    @staticmethod
    def payload(message: Notification) -> dict[str, Any]:
        bullets = "\n".join(f"• *{'RESOLVED' if a.status != FIRING else a.severity.upper()}* `{a.id}`: {a.summary}"
                            for a in message.alerts)
        mention = " ".join(message.recipients_for("slack"))  # an escalation target such as slack:@eng-manager
        head = f"{mention} {message.title}" if mention else message.title
        return {"text": head, "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{mention} *{message.title}*".strip()[:3000]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": bullets[:3000] or "(no alerts)"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"nanoedit · {message.kind} · {message.id}"}]},
        ]}

    def send(self, message: Notification, timeout_s: float) -> SendResult:
        resp = self.session.post(self.url, json=self.payload(message), timeout=timeout_s, allow_redirects=False,
                                 headers={"User-Agent": USER_AGENT})
        return _http_result(resp)


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: str, session: requests.Session | None = None,
                 clock: Clock | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ChannelConfigError("NANOEDIT_ALERT_WEBHOOK_URL must be an http(s) URL")
        if not secret:
            raise ChannelConfigError("NANOEDIT_ALERT_WEBHOOK_URL is set but NANOEDIT_ALERT_WEBHOOK_SECRET is not: "
                                     "alert webhooks are always signed (a whsec_... secret)")
        try:
            self.signer = Webhook(secret)
        except Exception:
            raise ChannelConfigError("NANOEDIT_ALERT_WEBHOOK_SECRET is not a valid whsec_<base64> secret") from None
        self.url = url
        self.session = session or requests.Session()
        self.clock = clock or SystemClock()  # wall clock: receivers reject signatures more than 5 minutes off

    @staticmethod
    def body(message: Notification) -> str:
        data = message.to_dict()
        data.pop("deliveries", None)
        return json.dumps({"type": f"alert.{message.kind}", "timestamp": rfc3339(message.created_at),
                           "data": data})

    def send(self, message: Notification, timeout_s: float) -> SendResult:
        body = self.body(message)
        now = self.clock.now()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": message.id,
                   "webhook-timestamp": str(int(now)),
                   "webhook-signature": self.signer.sign(message.id, datetime.fromtimestamp(now, tz=UTC), body)}
        resp = self.session.post(self.url, data=body.encode(), headers=headers, timeout=timeout_s,
                                 allow_redirects=False)
        return _http_result(resp)


class EmailChannel:
    name = "email"

    def __init__(self, smtp_url: str, to: Sequence[str]) -> None:
        parts = urlsplit(smtp_url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ChannelConfigError("NANOEDIT_SMTP_URL must look like smtp://user:pass@host:port (or smtps://)")
        if not to:
            raise ChannelConfigError("NANOEDIT_SMTP_URL is set but NANOEDIT_ALERT_EMAIL_TO is empty")
        query = parse_qs(parts.query)
        self.host = parts.hostname
        self.ssl = parts.scheme == "smtps"
        try:
            self.port = parts.port or (465 if self.ssl else 25)
        except ValueError:
            raise ChannelConfigError("NANOEDIT_SMTP_URL has an invalid port") from None
        self.starttls = not self.ssl and (self.port == 587 or query.get("starttls", ["0"])[0] in ("1", "true"))
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.sender = query.get("from", [""])[0] or (self.user if "@" in self.user else
                                                      f"nanoedit-alerts@{socket.gethostname()}")
        self.to = list(to)

    def send(self, message: Notification, timeout_s: float) -> SendResult:
        mail = EmailMessage()
        to = message.recipients_for(self.name) or self.to  # an escalation target such as email:em@example.com
        mail["Subject"], mail["From"], mail["To"] = message.title[:200], self.sender, ", ".join(to)
        mail["Message-ID"] = f"<{message.id}@nanoedit>"
        mail.set_content(render_text(message))
        try:
            self.submit(mail, timeout_s)
        except smtplib.SMTPRecipientsRefused:
            return SendResult(False, None, "SMTPRecipientsRefused", retryable=False)
        except smtplib.SMTPResponseException as exc:
            return SendResult(False, exc.smtp_code, f"{type(exc).__name__} {exc.smtp_code}",
                              retryable=exc.smtp_code < 500)
        return SendResult(True, 250)

    def submit(self, mail: EmailMessage, timeout_s: float) -> None:
        """One SMTP session for `mail` (TLS, STARTTLS and login as configured); raises smtplib's errors."""
        factory = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
        with factory(self.host, self.port, timeout=timeout_s) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(mail)


class LogChannel:
    name = "log"

    def send(self, message: Notification, timeout_s: float) -> SendResult:
        level = logging.INFO if message.kind in ("resolved", "test") else logging.WARNING
        log.log(level, message.title, extra={"alert_notification": {k: v for k, v in message.to_dict().items()
                                                                     if k != "deliveries"}})
        return SendResult(True)


class RecordingChannel:
    """The in-package stub of `Channel` for tests: records every message and answers 200."""

    def __init__(self, name: str = "stub") -> None:
        self.name = name  # name it "pagerduty", "slack"... to stand in for a routed channel
        self.messages: list[Notification] = []

    def send(self, message: Notification, timeout_s: float) -> SendResult:
        self.messages.append(message)
        return SendResult(True, 200)

    def kinds(self) -> list[str]:
        return [m.kind for m in self.messages]
