"""Settings validation at start-up, and secrets never reaching the logs."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared.logging_setup import configure_logging, log_context
from shared.settings import Settings, SettingsError


@pytest.mark.parametrize("secret", ["not-base64!!", "whsec_c2hvcnQ=", "whsec_"])
def test_malformed_webhook_secret_fails_at_start(secret: str) -> None:
    with pytest.raises(SettingsError, match="NANOEDIT_WEBHOOK_SECRET"):
        Settings.from_env({"NANOEDIT_WEBHOOK_SECRET": secret})


def test_provider_resolution_and_bad_numbers() -> None:
    assert Settings.from_env({}).provider == "local"
    assert Settings.from_env({"GEMINI_API_KEY": "k"}).provider == "gemini"
    with pytest.raises(SettingsError):
        Settings.from_env({"NANOEDIT_PROVIDER": "gemini"})
    with pytest.raises(SettingsError):
        Settings.from_env({"NANOEDIT_MAX_RETRIES": "lots"})


def test_keys_and_secrets_are_redacted_everywhere_in_the_log_line() -> None:
    gemini_key = "AIzaSyD-test-key-0123456789abcdefghij"
    settings = Settings.from_env({"GEMINI_API_KEY": gemini_key, "NANOEDIT_API_KEYS": "client-key-abcdef",
                                  "NANOEDIT_ADMIN_TOKEN": "admin-token-xyz123",
                                  "NANOEDIT_WEBHOOK_SECRET": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"})
    stream = io.StringIO()
    configure_logging(settings, process="test", stream=stream)
    log = logging.getLogger("nanoedit.test")
    with log_context(job_id="j1", request_id="r1"):
        log.warning("calling with key %s", gemini_key, extra={"auth": "Bearer client-key-abcdef",
                                                              "token": "admin-token-xyz123"})
        try:
            raise RuntimeError(f"boom x-goog-api-key: {gemini_key}")
        except RuntimeError:
            log.exception("failed")
    text = stream.getvalue()
    for secret in (gemini_key, "client-key-abcdef", "admin-token-xyz123", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"):
        assert secret not in text
    first = json.loads(text.splitlines()[0])
    assert first["job_id"] == "j1" and first["request_id"] == "r1" and first["level"] == "WARNING"
    logging.getLogger().handlers.clear()
