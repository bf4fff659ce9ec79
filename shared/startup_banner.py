"""Printed by `make up` before the processes start: validates the settings and names the provider.

Every URL it prints goes through `shared.redaction.redact_url`: no Redis or SMTP password, no Slack or alert
webhook token ever reaches the terminal.
"""

from __future__ import annotations

import sys

from shared.redaction import redact, redact_url, secrets_of
from shared.settings import Settings, SettingsError, is_loopback_host


def main() -> int:
    try:
        s = Settings.from_env()
    except SettingsError as exc:
        print(f"nanoedit: configuration error: {redact(str(exc))}", file=sys.stderr)
        return 2
    if s.provider == "local":
        print("nanoedit: no GEMINI_API_KEY/GOOGLE_API_KEY set: using the offline 'local' provider "
              "(a deterministic Pillow editor; see README 'Providers')", file=sys.stderr)
    else:
        where = s.gemini_base_url or "Google's endpoint"
        print(f"nanoedit: provider gemini, model {s.gemini_model}, via {where}", file=sys.stderr)
    if not s.auth_enabled:
        print("nanoedit: NANOEDIT_API_KEYS is unset: auth is OFF (development mode)", file=sys.stderr)
        if not is_loopback_host(s.host):  # only reachable with NANOEDIT_ALLOW_INSECURE=1 (Settings refuses)
            print(f"nanoedit: *** INSECURE *** auth is off and the API listens on {s.host}, beyond loopback "
                  "(NANOEDIT_ALLOW_INSECURE=1): anyone who can reach it can use the service", file=sys.stderr)
    print(f"nanoedit: Redis {redact(redact_url(s.redis_url), secrets_of(s))}", file=sys.stderr)
    if s.redis_sentinel is not None:  # the URL's host is then ignored (shared/redis_config.py)
        nodes = ",".join(f"{h}:{p}" for h, p in s.redis_sentinel.nodes)
        print(f"nanoedit: Redis master {s.redis_sentinel.master!r} found through Sentinel {nodes}", file=sys.stderr)
    channels = [f"{name} {redact(redact_url(url), secrets_of(s))}" for name, url in (
        ("slack", s.slack_webhook_url), ("webhook", s.alert_webhook_url), ("email", s.smtp_url),
        ("pagerduty", s.pagerduty_url if s.pagerduty_routing_key else ""), ("sms", s.sms_url)) if url]
    if channels:
        print(f"nanoedit: alert channels: {', '.join(channels)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
