"""Paging channels: PagerDuty (Events API v2) and SMS through a Twilio-compatible Messages API.

Like every channel (`channels.py`), one attempt per `send`, no exception text in errors (the URLs and keys are
secrets), bounded by the notifier's timeout. Both are operator configuration, trusted like Slack: they do not go
through the client-URL guard (`shared/outbound.py`).

- `PagerDutyChannel`: one event per message. The dedup_key is the group's incident key (stable for the whole
  episode, so repeats and escalations update one PagerDuty incident): firing/repeat/escalation → `trigger`;
  resolved → `resolve` once nothing in the message still fires (else a `trigger` that updates the incident);
  acknowledged → `acknowledge`; a test message (`nanoedit alerts --test`) opens an `info` incident of its own, to
  resolve by hand. Severities map critical→critical, high→error, medium→warning, low→info.
  A `pagerduty:<routing key>` target overrides the routing key.
- `SmsChannel`: one form POST (To, From, Body) per number with HTTP basic auth (account SID, auth token); the
  body is cut to one SMS (160 characters). `sms:+1555...` targets override NANOEDIT_SMS_TO.
Hand-written rather than the pdpyras/twilio SDKs: each is one POST, and the SDKs would bring their own retry and
session policy beside the notifier's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests

from monitoring.alerts.channels import USER_AGENT, ChannelConfigError, SendResult, _http_result
from monitoring.alerts.model import FIRING, Notification
from shared.clock import rfc3339

PD_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
SMS_MAX = 160


def _check_url(url: str, setting: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ChannelConfigError(f"{setting} must be an http(s) URL")


def pagerduty_action(message: Notification) -> str:
    if message.kind == "acknowledged":
        return "acknowledge"
    if message.kind == "resolved" and not any(a.status == FIRING for a in message.alerts):
        return "resolve"
    return "trigger"


class PagerDutyChannel:
    name = "pagerduty"

    def __init__(self, routing_key: str, url: str, session: requests.Session | None = None) -> None:
        _check_url(url, "NANOEDIT_PAGERDUTY_URL")
        if not routing_key:
            raise ChannelConfigError("NANOEDIT_PAGERDUTY_URL is set but NANOEDIT_PAGERDUTY_ROUTING_KEY is not")
        self.routing_key = routing_key
        self.url = url
        self.session = session or requests.Session()

    def event(self, message: Notification) -> dict[str, Any]:
        key = (message.recipients_for(self.name) or (self.routing_key,))[0]
        action = pagerduty_action(message)
        incident = f"test/{message.id}" if message.kind == "test" else (message.incident or message.group)
        event: dict[str, Any] = {"routing_key": key, "event_action": action, "dedup_key": f"nanoedit/{incident}"}
        if action != "trigger":
            return event
        top = next((a for a in message.alerts if a.status == FIRING), message.alerts[0] if message.alerts else None)
        event["payload"] = {
            "summary": message.title[:1024], "source": "nanoedit",
            "severity": PD_SEVERITY.get(message.severity, "info") if message.kind != "test" else "info",
            "timestamp": rfc3339(message.created_at), "component": message.group,
            "class": top.rule if top else message.kind,
            "custom_details": {"kind": message.kind, "message_id": message.id, "step": message.step,
                               "alerts": [{"id": a.id, "status": a.status, "severity": a.severity,
                                           "summary": a.summary, "value": a.value} for a in message.alerts]}}
        event["client"] = "nanoedit"
        return event

    def send(self, message: Notification, timeout_s: float) -> SendResult:
        resp = self.session.post(self.url, json=self.event(message), timeout=timeout_s, allow_redirects=False,
                                 headers={"User-Agent": USER_AGENT})
        return _http_result(resp)


def sms_body(message: Notification) -> str:
    return message.title[:SMS_MAX]


class SmsChannel:
    name = "sms"

    def __init__(self, url: str, account_sid: str, auth_token: str, sender: str, to: Sequence[str],
                 session: requests.Session | None = None) -> None:
        _check_url(url, "NANOEDIT_SMS_URL")
        missing = [n for n, v in (("NANOEDIT_SMS_ACCOUNT_SID", account_sid), ("NANOEDIT_SMS_AUTH_TOKEN", auth_token),
                                  ("NANOEDIT_SMS_FROM", sender), ("NANOEDIT_SMS_TO", list(to))) if not v]
        if missing:
            raise ChannelConfigError(f"NANOEDIT_SMS_URL is set but {', '.join(missing)} is not")
        self.url = url.replace("{sid}", account_sid)
        self.auth = (account_sid, auth_token)
        self.sender = sender
        self.to = list(to)
        self.session = session or requests.Session()

    def send(self, message: Notification, timeout_s: float) -> SendResult:
        body = sms_body(message)
        result = SendResult(True, None)
        for number in message.recipients_for(self.name) or self.to:
            resp = self.session.post(self.url, data={"To": number, "From": self.sender, "Body": body},
                                     auth=self.auth, timeout=timeout_s, allow_redirects=False,
                                     headers={"User-Agent": USER_AGENT})
            result = _http_result(resp)
            if not result.ok:
                return result
        return result
