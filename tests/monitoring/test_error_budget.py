"""The honest error budget: one table says whose failure each code is, and the error rate (and so the error-rate
and burn-rate rules) counts the service's failures only; cancels and caller-caused failures are reported beside
it. Recorder and report level against a real Redis with a fake clock, then real jobs through the local provider."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from monitoring.outcomes import OutcomeRecorder
from monitoring.report import summarize
from shared.clock import FakeClock, SystemClock
from shared.errors import Blame, ErrorSpec, all_codes, blame_of, spec_for
from tests.conftest import FIXTURES
from tests.monitoring.test_metrics import sample
from tests.support.stack import RedisServer, Stack, free_port, start_stack, wait_for
from workers.providers.base import ERROR_TABLE

ROOT = Path(__file__).resolve().parents[2]
SERVICE = {"internal_error", "service_unavailable", "storage_unavailable", "upstream_rate_limited",
           "upstream_timeout", "upstream_unavailable", "upstream_auth_error", "model_unavailable",
           "deadline_exceeded", "output_too_large", "no_live_workers"}
CALLER_JOB_ERRORS = {"content_blocked", "no_image_generated", "invalid_reference", "image_corrupt",
                     "unsupported_media_type", "image_too_many_pixels", "image_too_many_frames"}


def test_every_code_is_classified_and_the_column_is_required() -> None:
    # Given the ErrorSpec table
    codes = all_codes()
    # Then every code has a class, and exactly these are the service's
    assert all(isinstance(spec_for(c).blame, Blame) for c in codes)
    assert {c for c in codes if blame_of(c) == Blame.SERVICE} == SERVICE
    assert [c for c in codes if blame_of(c) == Blame.CANCELED] == ["canceled"]
    assert {c for c in codes if blame_of(c) == Blame.CALLER} >= CALLER_JOB_ERRORS
    # and a new row without a class cannot be written: the column has no default
    fields = [f for f in dataclasses.fields(ErrorSpec) if f.name == "blame"]
    assert fields and fields[0].default is dataclasses.MISSING
    with pytest.raises(TypeError):
        ErrorSpec("new_code", 500, "A message.", "A suggestion.")  # type: ignore[call-arg, arg-type]


def test_every_job_error_code_the_code_can_produce_is_in_the_table() -> None:
    # Given every provider outcome and every code the workers and API hand to job_error/fail_job
    provider_codes = {rule.code for _, rule in ERROR_TABLE}
    sources = [p for d in ("workers", "api", "shared") for p in (ROOT / d).rglob("*.py")]
    literal = re.compile(r"""(?:job_error|fail_job\(ctx, job_id,)\(?\s*["']([a-z_]+)["']""")
    used = {m for p in sources for m in literal.findall(p.read_text("utf-8"))}
    # Then each one is a row of the table (none falls back to internal_error by accident)
    assert used, "the pattern found no job error codes: update it"
    assert provider_codes | used <= set(all_codes()), (provider_codes | used) - set(all_codes())
    # and an unknown code is charged to the service (it can only be our bug)
    assert blame_of("no_such_code") == Blame.SERVICE


def record(rec: OutcomeRecorder, n: int, status: str, code: str | None, tag: str) -> None:
    for i in range(n):
        rec.job_finished(f"{tag}{i}", status=status, error_code=code, latency_s=1.0)


def test_cancels_and_blocked_content_do_not_move_the_error_rate(redis_db: redis.Redis) -> None:
    # Given 95 successes and 5 upstream failures: a 5 % service error rate
    rec = OutcomeRecorder(redis_db, "t", FakeClock(1_700_000_000))
    record(rec, 95, "succeeded", None, "ok")
    record(rec, 5, "failed", "upstream_unavailable", "up")
    before = summarize(rec.window(5), 20)
    assert before["error_rate"] == 0.05
    # When a burst of blocked content, instructions the provider cannot act on, bad images and cancels follows
    record(rec, 300, "failed", "content_blocked", "blk")
    record(rec, 1200, "failed", "no_image_generated", "noimg")
    record(rec, 40, "failed", "image_corrupt", "bad")
    record(rec, 200, "canceled", "canceled", "cxl")
    after = summarize(rec.window(5), 20)
    # Then the error rate has not moved: 94 % of finished jobs failed, but not because the service did
    assert after["error_rate"] == 0.05 and after["judged"] == 100
    assert after["failures_by_blame"] == {"service": 5, "caller": 1540}
    assert after["caller_error_rate"] == round(1540 / 1640, 4) and after["canceled"] == 200
    assert after["errors_by_code"]["no_image_generated"] == 1200  # still reported by code
    # and a service failure still moves it
    record(rec, 5, "failed", "upstream_timeout", "to")
    assert summarize(rec.window(5), 20)["error_rate"] == round(10 / 105, 4)


def test_a_minute_recorded_before_the_blame_counters_counts_every_failure(redis_db: redis.Redis) -> None:
    # Given a minute bucket written by the previous version (status and error counters, no blame:*)
    clock = FakeClock(1_700_000_000)
    key = f"t:mon:m:{int(clock.now() // 60)}:counts"
    redis_db.hset(key, mapping={"jobs_finished": 10, "status:succeeded": 8, "status:failed": 2,
                                "error:content_blocked": 2})
    # When it is summarized
    summary = summarize(OutcomeRecorder(redis_db, "t", clock).window(5), 20)
    # Then it means what it meant then: every failure the service's
    assert summary["error_rate"] == 0.2 and summary["failures_by_blame"] == {"service": 2, "caller": 0}


# -- real jobs through the local provider ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Its own Redis database and a slow local provider (1.5 s a call, one at a time), so jobs can be canceled
    while they wait."""
    port = free_port()
    s = start_stack(redis_server.url(8), tmp_path_factory.mktemp("budget"), generate=(1,), webhooks=0,
                    generate_env={"NANOEDIT_METRICS_PORT": str(port)}, NANOEDIT_LOCAL_DELAY_S="1.5",
                    NANOEDIT_CACHE_TTL_S="0")
    s.env["BUDGET_METRICS_PORT"] = str(port)  # read back by the test; the processes are already started
    yield s
    s.stop()


def _scrape_with(url: str, needle: str) -> str | None:
    try:
        text = requests.get(url, timeout=10).text
    except requests.RequestException:
        return None
    return text if needle in text else None


def submit(stack: Stack, instruction: str) -> str:
    files = [("image", ("chelsea.png", (FIXTURES / "chelsea.png").read_bytes(), "image/png"))]
    resp = requests.post(f"{stack.url}/v1/jobs", files=files, data={"instruction": instruction}, timeout=30,
                         headers={"Cache-Control": "no-cache"})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def finished(stack: Stack, job_id: str) -> dict[str, Any] | None:
    job = dict(requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json())
    return job if job["status"] in {"succeeded", "failed", "canceled"} else None


@pytest.mark.e2e
def test_real_unknown_instructions_and_cancels_leave_the_error_rate_at_zero(slow_stack: Stack) -> None:
    # Given 2 jobs the local provider can do, 3 instructions it does not understand and 2 jobs canceled while
    # they wait behind them
    good = [submit(slow_stack, "make it black and white") for _ in range(2)]
    unknown = [submit(slow_stack, "sing me a song about the sea") for _ in range(3)]
    doomed = [submit(slow_stack, "rotate 90 degrees") for _ in range(2)]
    for job_id in doomed:
        resp = requests.delete(f"{slow_stack.url}/v1/jobs/{job_id}", timeout=10)
        assert resp.status_code in (200, 202), resp.text
    # When they all finish
    jobs = {j: wait_for(lambda j=j: finished(slow_stack, j), 90, f"job {j} terminal", 0.2)
            for j in good + unknown + doomed}
    assert [jobs[j]["status"] for j in good] == ["succeeded"] * 2, slow_stack.logs()
    assert {jobs[j]["error"]["code"] for j in unknown} == {"no_image_generated"}
    assert [jobs[j]["status"] for j in doomed] == ["canceled"] * 2
    # Then the health report's figures, from the outcome samples the workers wrote, put none of it in the
    # error rate: the unknown instructions are caller failures and the cancels are reported beside it
    r = redis.Redis.from_url(slow_stack.env["NANOEDIT_REDIS_URL"], decode_responses=True)
    recorder = OutcomeRecorder(r, "nanoedit", SystemClock())
    wait_for(lambda: recorder.window(10).count("jobs_finished") == 7, 30, "7 finished jobs recorded", 0.2)
    summary = summarize(recorder.window(10), 1)
    assert summary["error_rate"] == 0.0 and summary["judged"] == 2
    assert summary["failures_by_blame"] == {"service": 0, "caller": 3}
    assert summary["caller_error_rate"] == 0.6 and summary["canceled"] == 2
    # and the generate instance's /metrics says the same to Prometheus: its failures carry blame="caller"
    url = f"http://127.0.0.1:{slow_stack.env['BUDGET_METRICS_PORT']}/metrics"
    text = wait_for(lambda: _scrape_with(url, "nanoedit_jobs_finished_total{"), 30, "finished jobs in the metrics",
                    0.5)
    assert sample(text, "nanoedit_jobs_finished_total", status="failed", blame="caller",
                  error_code="no_image_generated") == 3
    assert sample(text, "nanoedit_jobs_finished_total", status="failed", blame="service") is None
