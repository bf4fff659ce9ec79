"""The intake check of a job's `webhook_url` (called once from `api.intake`): can it be signed, and may it be called?

Refused before anything is stored:
- a URL the outbound guard refuses (shared/outbound.py: not http(s), user info, a host that resolves — within
  NANOEDIT_WEBHOOK_RESOLVE_TIMEOUT_S — to a non-public address, a port other than 80/443, a name that does not
  resolve) → 422 `invalid_webhook_url`, whose suggestion names NANOEDIT_WEBHOOK_ALLOW_HOSTS for operators;
- a caller with no signing secret (neither its key's `webhook_secret` nor NANOEDIT_WEBHOOK_SECRET) → 400
  `invalid_request`: an unsigned callback could be forged by anyone who learns the URL.
The worker checks the URL again before every attempt (DNS may have changed since).
"""

from __future__ import annotations

from flask import request

from api.auth import caller_key
from api.services import services
from shared.errors import ClientInputError
from shared.outbound import check_syntax, check_url
from shared.settings import Settings


def checked_webhook_url(raw: str, settings: Settings) -> str:
    """`raw` when the service may sign and send the job's webhook to it ("" when none was given); else raises."""
    if not raw:
        return ""
    check_syntax(raw)
    key = caller_key(settings, services().keyring, request)
    if not ((key is not None and key.webhook_secret) or settings.webhook_secret):
        raise ClientInputError("this server has no NANOEDIT_WEBHOOK_SECRET, so it cannot sign webhooks",
                               code="invalid_request", message="Webhooks are not enabled on this server.",
                               suggestion="Omit webhook_url and poll GET /v1/jobs/{id}, or ask the operators "
                                          "to set NANOEDIT_WEBHOOK_SECRET (or a webhook_secret for your key).")
    check_url(raw, settings.outbound_policy())
    return raw
