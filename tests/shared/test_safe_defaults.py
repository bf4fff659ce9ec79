"""Safe defaults: loopback-only without auth, and secrets redacted in every log line and the start-up banner."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from shared.logging_setup import configure_logging
from shared.redaction import RedactingFilter, redact, redact_url, secrets_of
from shared.settings import Settings, SettingsError, is_loopback_host

ROOT = Path(__file__).resolve().parents[2]
SLACK = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/xoxsecretTOKEN123456"
SECRETS_ENV = {
    "NANOEDIT_REDIS_URL": "rediss://default:redis-pass-123@redis.example:6380/0",
    "NANOEDIT_SMTP_URL": "smtp://alerts:smtp-pass-456@mail.example:587",
    "NANOEDIT_SLACK_WEBHOOK_URL": SLACK,
    "NANOEDIT_ALERT_WEBHOOK_URL": "https://hooks.example.net/alert/route-token-789?sig=abcdef",
}
PLAIN = ("redis-pass-123", "smtp-pass-456", "xoxsecretTOKEN123456", "route-token-789", "sig=abcdef")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"])
def test_loopback_binds_need_no_keys(host: str) -> None:
    assert is_loopback_host(host)
    assert Settings.from_env({"NANOEDIT_HOST": host}).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "myhost.example"])
def test_non_loopback_bind_with_auth_off_is_refused(host: str) -> None:
    with pytest.raises(SettingsError, match="NANOEDIT_ALLOW_INSECURE"):
        Settings.from_env({"NANOEDIT_HOST": host})
    # with keys it is fine; with the explicit opt-out too (and remembered, for the loud warnings)
    assert Settings.from_env({"NANOEDIT_HOST": host, "NANOEDIT_API_KEYS": "k-123456789"}).auth_enabled
    assert Settings.from_env({"NANOEDIT_HOST": host, "NANOEDIT_ALLOW_INSECURE": "1"}).allow_insecure


def test_new_limits_are_read_from_the_environment() -> None:
    s = Settings.from_env({"NANOEDIT_MAX_INSTRUCTION_CHARS": "500", "NANOEDIT_MAX_FORM_PARTS": "16",
                           "NANOEDIT_MAX_JSON_BYTES": "2048", "NANOEDIT_MAX_JSON_DEPTH": "8",
                           "NANOEDIT_MAX_FRAMES": "50", "NANOEDIT_MAX_OUTPUT_BYTES": "4096",
                           "NANOEDIT_MAX_OUTPUT_PIXELS": "10000", "NANOEDIT_MAX_OUTPUT_LONG_EDGE": "100",
                           "NANOEDIT_ALLOWED_HOSTS": "API.example, localhost"})
    assert (s.max_instruction_chars, s.max_form_parts, s.max_json_bytes, s.max_json_depth, s.max_frames,
            s.max_output_bytes, s.max_output_pixels, s.max_output_long_edge) == (
        500, 16, 2048, 8, 50, 4096, 10000, 100)
    assert s.allowed_hosts == ("api.example", "localhost")
    with pytest.raises(SettingsError):  # below werkzeug's read chunk
        Settings.from_env({"NANOEDIT_MAX_FORM_FIELD_BYTES": "1000"})


def test_redact_shapes_and_configured_values() -> None:
    s = Settings.from_env(SECRETS_ENV)
    text = (f"connect {SECRETS_ENV['NANOEDIT_REDIS_URL']} smtp {SECRETS_ENV['NANOEDIT_SMTP_URL']} slack {SLACK} "
            f"hook {SECRETS_ENV['NANOEDIT_ALERT_WEBHOOK_URL']} other redis://:pw-elsewhere@h/1")
    out = redact(text, secrets_of(s))
    for secret in (*PLAIN, "pw-elsewhere"):
        assert secret not in out
    assert "rediss://default:[REDACTED]@redis.example" in out and "smtp://alerts:[REDACTED]@mail" in out
    assert redact_url(SLACK) == "https://hooks.slack.com/[REDACTED]"


def test_every_log_line_is_redacted_including_extras_and_tracebacks() -> None:
    settings = Settings.from_env(SECRETS_ENV)
    stream = io.StringIO()
    configure_logging(settings, process="test", stream=stream)
    log = logging.getLogger("nanoedit.test.redaction")
    try:
        log.warning("channel %s failed", SLACK, extra={"url": SECRETS_ENV["NANOEDIT_SMTP_URL"],
                                                        "redis": SECRETS_ENV["NANOEDIT_REDIS_URL"]})
        try:
            raise ConnectionError(f"cannot reach {SECRETS_ENV['NANOEDIT_ALERT_WEBHOOK_URL']}")
        except ConnectionError:
            log.exception("delivery failed")
    finally:
        logging.getLogger().handlers.clear()
    text = stream.getvalue()
    assert text.count("[REDACTED]") >= 4
    for secret in PLAIN:
        assert secret not in text, secret
    assert all(json.loads(line) for line in text.splitlines())


def test_gunicorn_side_filter_redacts_message_args_and_exception() -> None:
    record = logging.LogRecord("gunicorn.error", logging.ERROR, __file__, 1, "boot %s", (SLACK,), None)
    try:
        raise RuntimeError("smtp://u:smtp-pass-456@h")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    RedactingFilter(["smtp-pass-456"]).filter(record)
    assert "xoxsecret" not in record.getMessage() and "smtp-pass-456" not in (record.exc_text or "")


def test_start_up_banner_redacts_urls_and_warns_when_insecure() -> None:
    env = {"PATH": "/usr/bin:/bin", **SECRETS_ENV, "NANOEDIT_HOST": "0.0.0.0", "NANOEDIT_ALLOW_INSECURE": "1"}
    done = subprocess.run([sys.executable, "-m", "shared.startup_banner"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "INSECURE" in done.stderr and "redis.example" in done.stderr and "hooks.slack.com" in done.stderr
    for secret in PLAIN:
        assert secret not in done.stderr, secret
    refused = subprocess.run([sys.executable, "-m", "shared.startup_banner"], cwd=ROOT, timeout=60, text=True,
                             env={**env, "NANOEDIT_ALLOW_INSECURE": ""}, capture_output=True)
    assert refused.returncode == 2 and "NANOEDIT_ALLOW_INSECURE" in refused.stderr
