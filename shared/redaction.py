"""Secrets that must never reach a log line or the start-up banner, and the one function that removes them.

Two kinds of secret:
- configured values, known exactly (`secrets_of(settings)`): API keys, the admin token, the Gemini key, webhook
  secrets, the PagerDuty routing key, the SMS auth token, the password of `NANOEDIT_REDIS_URL` and
  `NANOEDIT_SMTP_URL`, `NANOEDIT_REDIS_SENTINEL_PASSWORD`, and the path (the token) of
  `NANOEDIT_SLACK_WEBHOOK_URL` and `NANOEDIT_ALERT_WEBHOOK_URL`;
- shapes, whatever their value (`redact`): Gemini keys (`AIza…`), `whsec_` secrets, bearer tokens,
  `x-goog-api-key` values, credentials in any URL (`smtp://user:pass@`, `redis://:pass@`, `rediss://…`), and
  Slack incoming-webhook paths (`hooks.slack.com/services/…`).

`shared.logging_setup` applies `redact` to every rendered log line; `shared.startup_banner` to what it prints.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from shared.settings import Settings

MASK = "[REDACTED]"
_MIN_SECRET_CHARS = 6  # shorter configured values are not replaced (they would mangle ordinary text)
_SHAPES = (
    (re.compile(r"(AIza[0-9A-Za-z_\-]{20,}|whsec_[0-9A-Za-z+/=]+|Bearer\s+[^\s\"']+"
                r"|x-goog-api-key[\"':=\s]+[^\s\"',]+)", re.IGNORECASE), MASK),
    # user:password@ in any URL (smtp, smtps, redis, rediss, amqp, http...): the user name stays, for debugging.
    (re.compile(r"\b([a-z][a-z0-9+.\-]*://[^\s/:@\"'<>]*:)[^\s@\"'<>/]+@", re.IGNORECASE), rf"\g<1>{MASK}@"),
    # Slack incoming webhooks and workflow triggers: the path is the credential.
    (re.compile(r"(hooks\.slack\.com/(?:services|workflows|triggers)/)[^\s\"'<>]+", re.IGNORECASE), rf"\g<1>{MASK}"),
)

# What each shape needs to be present at all (checked on the line and its lower case): skipping a pattern that
# cannot match saves ~15 µs of regex scanning on every request's log line (~2.5 % of a status poll, py-spy).
_GATES = (
    lambda text, lower: "aiza" in lower or "whsec_" in lower or "bearer" in lower or "x-goog-api-key" in lower,
    lambda text, lower: "://" in text and "@" in text,
    lambda text, lower: "hooks.slack.com" in lower,
)


def secrets_of(settings: Settings) -> tuple[str, ...]:
    """Every configured secret value, longest first (so a secret containing another is replaced whole)."""
    values = [*settings.api_keys, settings.admin_token, settings.gemini_api_key, settings.alert_webhook_secret,
              settings.webhook_secret, settings.key_hash_secret, settings.pagerduty_routing_key,
              settings.sms_auth_token,
              settings.redis_sentinel.password if settings.redis_sentinel else ""]
    for url in (settings.redis_url, settings.smtp_url):
        values.append(_password(url))
    for url in (settings.slack_webhook_url, settings.alert_webhook_url):
        values.append(_path_token(url))
    return tuple(sorted({v for v in values if len(v) >= _MIN_SECRET_CHARS}, key=len, reverse=True))


def _password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def _path_token(url: str) -> str:
    """The secret part of a webhook URL: everything after the host (path and query)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    token = parts.path + (f"?{parts.query}" if parts.query else "")
    return token if token.strip("/") else ""


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every configured secret and every secret-shaped value replaced by [REDACTED]."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    lower = text.lower()
    for (pattern, replacement), may_match in zip(_SHAPES, _GATES, strict=True):
        if may_match(text, lower):  # a cheap substring test first: almost no line holds a secret shape
            text = pattern.sub(replacement, text)
    return text


def redact_url(url: str) -> str:
    """A URL safe to print: credentials and webhook tokens removed, scheme and host kept."""
    if not url:
        return url
    token = _path_token(url)
    return redact(url.replace(token, "/" + MASK) if len(token) >= _MIN_SECRET_CHARS else url)


class RedactingFilter(logging.Filter):
    """For loggers configured outside `shared.logging_setup` (gunicorn's own, via `logconfig_dict`): redacts the
    message, its arguments and the exception text before any handler formats them."""

    def __init__(self, secrets: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
            record.exc_info = None
        return True
