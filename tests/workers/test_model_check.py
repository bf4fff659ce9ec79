"""The start-up model check through the real SDK against the fake's model list: missing models are stored,
shown by /readyz?detailed=true without failing readiness, counted in the health report for the alert rule; an
unreachable API is an error, never 'missing'."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import fakeredis
import pytest

from monitoring.alerts.rules import load_rules
from shared.clock import FakeClock
from shared.model_availability import load, readiness_check
from shared.settings import Settings
from workers.fake_gemini import FakeGeminiConfig, FakeGeminiServer
from workers.model_check import check_models, start_in_background

NOW = dt.datetime(2026, 11, 30, tzinfo=dt.UTC).timestamp()


@pytest.fixture
def fake() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(FakeGeminiConfig(known_models=("gemini-3.1-flash-image", "gemini-3.1-flash-lite-image"))
                          ) as server:
        yield server


def gemini_settings(base_url: str) -> Settings:
    return Settings(provider="gemini", gemini_api_key="AIzaSyFAKE-0123456789abcdefghijklmno", gemini_base_url=base_url,
                    gemini_timeout_s=2, redis_prefix="t")


def test_a_model_the_api_does_not_list_is_reported_missing(fake: FakeGeminiServer) -> None:
    r = fakeredis.FakeRedis(decode_responses=True)
    result = check_models(gemini_settings(fake.base_url), FakeClock(NOW), r)
    assert result is not None and result.missing == ("gemini-3-pro-image",) and not result.error
    assert result.configured[0] == "gemini-3.1-flash-image"
    stored = load(r, "t")
    assert stored == result
    check = readiness_check(r, "t")
    assert check["ok"] is True and check["missing"] == ["gemini-3-pro-image"]  # informational: never unready


def test_an_unreachable_api_is_an_error_not_a_missing_model() -> None:
    r = fakeredis.FakeRedis(decode_responses=True)
    result = check_models(gemini_settings("http://127.0.0.1:9"), FakeClock(NOW), r)
    assert result is not None and result.missing == () and "unavailable" in result.error


def test_the_local_provider_checks_nothing_and_start_up_never_waits() -> None:
    r = fakeredis.FakeRedis(decode_responses=True)
    assert check_models(Settings(provider="local"), FakeClock(NOW), r) is None
    assert start_in_background(Settings(provider="local"), FakeClock(NOW), r) is None


def test_the_background_check_runs_in_a_daemon_thread(fake: FakeGeminiServer) -> None:
    r = fakeredis.FakeRedis(decode_responses=True)
    thread = start_in_background(gemini_settings(fake.base_url), FakeClock(NOW), r)
    assert thread is not None and thread.daemon
    thread.join(10)
    stored = load(r, "t")
    assert stored is not None and stored.missing == ("gemini-3-pro-image",)


def test_the_default_rules_alert_on_missing_models() -> None:
    rule = {r.name: r for r in load_rules(None).rules}["model_missing"]
    assert [(c.metric, c.op, c.threshold) for c in rule.conditions] == [("models.missing", ">", 0)]
