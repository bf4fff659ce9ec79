"""The three kinds of Gemini 429 end to end (docs/providers.md#429-kinds): real redis-server, real Celery workers,
the real google-genai SDK → the fake Gemini server, whose 429s carry the QuotaFailure ids of a per-minute quota,
a per-day quota and a spend cap.

- per-minute → the fleet cools down for RetryInfo (7 s), no model hold;
- spend cap → the fleet pauses for the cap's window (RetryInfo 3 s), no model hold;
- per-day → only that model is held until midnight Pacific, and a job whose deadline is later waits, saying so
  (`stage` waiting_for_quota, `waiting` {reason model_hold, until = the reset}); the provider is not called again.
  (A job whose deadline comes first fails at once: the scenario matrix in test_provider_faults.py.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from shared.limiter import FleetLimiter, LimitConfig
from shared.quota_reset import next_pacific_midnight
from tests.conftest import FIXTURES
from tests.e2e.test_pipeline import wait_done
from tests.support.stack import RedisServer, Stack, gemini_env, start_stack
from workers.fake_gemini import FakeGeminiServer

pytestmark = pytest.mark.e2e

DB = 29
DEADLINE_S = 26 * 3600  # longer than any wait for midnight Pacific (a 25 h day included)


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, fake: FakeGeminiServer, tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[Stack]:
    s = start_stack(redis_server.url(DB), tmp_path_factory.mktemp("quota-kinds"), generate=(2,),
                    **gemini_env(fake.base_url, NANOEDIT_MAX_RETRIES="0", NANOEDIT_GEMINI_TIMEOUT_S="5",
                                 NANOEDIT_JOB_DEADLINE_S=str(DEADLINE_S), NANOEDIT_JOB_TTL_S=str(DEADLINE_S + 3600),
                                 NANOEDIT_QUOTA_WAIT_S="0.2"))
    yield s
    s.stop()


@pytest.fixture
def limiter(stack: Stack, fake: FakeGeminiServer) -> Iterator[FleetLimiter]:
    r = redis.Redis.from_url(stack.env["NANOEDIT_REDIS_URL"], decode_responses=True)
    fleet = FleetLimiter(r, "nanoedit", LimitConfig(concurrency=1))

    def clear() -> None:
        r.delete("nanoedit:limiter:cooldown", *r.scan_iter("nanoedit:limiter:hold:*"))

    clear()
    fake.configure(scenario="ok")
    fake.reset()
    yield fleet
    fake.configure(scenario="ok")
    clear()


def submit(stack: Stack, instruction: str) -> str:
    resp = requests.post(f"{stack.url}/v1/jobs", timeout=60, data={"instruction": instruction},
                         files=[("image", ("a.png", (FIXTURES / "chelsea.png").read_bytes()))],
                         headers={"Cache-Control": "no-cache"})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def get(stack: Stack, job_id: str) -> dict[str, Any]:
    return dict(requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json())


@pytest.mark.parametrize(("scenario", "outcome", "pause_s"), [("rate_limited", "rate_limited", 7.0),
                                                               ("spend_cap", "spend_cap", 3.0)])
def test_per_minute_and_spend_cap_429_pause_the_fleet_for_retry_info(
        stack: Stack, fake: FakeGeminiServer, limiter: FleetLimiter, scenario: str, outcome: str,
        pause_s: float) -> None:
    # Given the fake answering 429 with this kind's QuotaFailure and RetryInfo
    fake.configure(scenario=scenario)
    # When a job runs (no retries in this stack)
    job = wait_done(stack, submit(stack, f"edit ({scenario})"), timeout_s=60)
    # Then it failed upstream_rate_limited with this outcome, and the whole fleet pauses for RetryInfo
    assert job["status"] == "failed" and job["error"]["code"] == "upstream_rate_limited", job
    assert job["error"]["suggestion"]
    assert [a["outcome"] for a in job["attempts"]] == [outcome]
    assert 0 < limiter.cooldown_remaining_s() <= pause_s
    # and no model is held
    assert limiter.holds() == {}


def test_per_day_429_holds_the_model_until_midnight_pacific_and_the_job_says_so(
        stack: Stack, fake: FakeGeminiServer, limiter: FleetLimiter) -> None:
    # Given the fake answering 429 on the per-day quota
    fake.configure(scenario="quota_day")
    # When a job runs whose deadline is after the next reset
    job_id = submit(stack, "edit (quota_day)")
    reset = next_pacific_midnight(time.time())
    deadline = time.monotonic() + 60
    job = get(stack, job_id)
    while time.monotonic() < deadline and not (job["stage"] == "waiting_for_quota" and job["attempts"]):
        time.sleep(0.1)
        job = get(stack, job_id)
    # Then it waits, saying why and until when (the reset)
    assert job["status"] == "running" and job["stage"] == "waiting_for_quota", (job, stack.logs())
    assert job["waiting"]["reason"] == "model_hold", job
    until = job["waiting"]["until"]
    assert abs(time_of(until) - reset) <= 1, (until, reset)
    assert [a["outcome"] for a in job["attempts"]] == ["quota_exhausted_day"]
    # and only that model is held, the fleet is not cooled down
    holds = limiter.holds()
    assert list(holds) == [job["model"]] and abs(holds[job["model"]] - (reset - time.time())) < 5
    assert limiter.cooldown_remaining_s() == 0.0
    # and while it waits the provider is not called again
    time.sleep(2)
    assert len(fake.requests()) == 1
    assert get(stack, job_id)["waiting"]["reason"] == "model_hold"
    # Finally, a cancel ends the wait
    assert requests.delete(f"{stack.url}/v1/jobs/{job_id}", timeout=10).status_code in (200, 202)
    assert wait_done(stack, job_id, timeout_s=60)["status"] == "canceled"


def time_of(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
