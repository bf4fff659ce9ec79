"""shared.redaction.redact: every secret shape is found whatever its case, with the cheap pre-checks in front of
the patterns (a pre-check that missed a shape would leak it into a log line)."""

from __future__ import annotations

import pytest

from shared.redaction import MASK, redact


@pytest.mark.parametrize(("line", "secret"), [
    ("key=AIzaSyD-test-key-0123456789abcdefghij", "AIzaSyD-test-key-0123456789abcdefghij"),
    ("key=aizasyd-test-key-0123456789abcdefghij", "aizasyd-test-key-0123456789abcdefghij"),
    ("Authorization: BEARER eyJhbGciOi.payload.sig", "eyJhbGciOi.payload.sig"),
    ("authorization: bearer tok_123", "tok_123"),
    ("{\"X-Goog-Api-Key\": \"AQ.secret-value\"}", "AQ.secret-value"),
    ("secret whsec_ZmFrZS1zZWNyZXQ= given", "ZmFrZS1zZWNyZXQ="),
    ("broker rediss://:p4ss-w0rd@redis.internal:6380/0", "p4ss-w0rd"),
    ("SMTP://mailer:hunter2@mail.example:587", "hunter2"),
    ("posting to https://Hooks.Slack.Com/services/T000/B000/XXXX", "T000/B000/XXXX"),
])
def test_every_shape_is_redacted_in_any_case(line: str, secret: str) -> None:
    # Given a log line holding one secret-shaped value
    # When it is redacted
    out = redact(line)
    # Then the value is gone and the mask stands in its place
    assert secret not in out and MASK in out


def test_a_line_without_any_shape_is_returned_unchanged() -> None:
    line = '{"message": "request", "path": "/v1/jobs/6f5b", "status": 200, "email": "a@b.example"}'
    assert redact(line) == line
