"""The "overhead" and "faults" bench scenarios (bench/overhead_bench.py, bench/faults_bench.py): that the suite
runs them, and that the arithmetic their figures rest on is right. What they measure is timed, so only the
counting is tested here: which requests belong to a job, what "provider time" is, and the seed's retry loop
against the real fake Gemini server and SDK."""

from __future__ import annotations

import math
from collections.abc import Callable

from bench import suite
from bench.faults_bench import generate_calls, seed_policy
from bench.overhead_bench import API_KEY, attempts_ms, provider_ms_by_tag, server_overhead_ms, stage_split
from shared.models import DEFAULT_MODEL
from workers.fake_gemini import FakeGeminiConfig, FakeGeminiServer
from workers.providers.base import EditRequest, InputImage, ProviderUnavailable
from workers.providers.gemini import GeminiProvider

GENERATE = "/v1beta/models/gemini-3.1-flash-image:generateContent"


def test_both_scenarios_are_registered_and_only_overhead_is_in_the_quick_run() -> None:
    # Given the suite's scenarios
    by_name = {s.name: s for s in suite.SCENARIOS}
    # Then overhead and faults are among them, runnable here; faults (~30 s even when small) only when named
    assert by_name["overhead"].in_quick_run and not by_name["faults"].in_quick_run
    assert not by_name["overhead"].skip_reason() and not by_name["faults"].skip_reason()


def test_provider_time_from_the_fake_sums_only_that_jobs_generate_requests() -> None:
    # Given the fake's log: two calls for "job 1" (a retry), one for "job 12", and a request that is not a call
    records = [
        {"path": GENERATE, "prompt": "Edit: grayscale (job 1)", "duration_ms": 3.0},
        {"path": GENERATE, "prompt": "Edit: grayscale (job 12)", "duration_ms": 5.0},
        {"path": GENERATE, "prompt": "Edit: grayscale (job 1)", "duration_ms": 4.5},
        {"path": "/v1beta/models", "prompt": "(job 1)", "duration_ms": 100.0},
    ]
    # When provider time is summed per tag
    got = provider_ms_by_tag(records, ["job 1", "job 12", "job 2"])
    # Then "job 1" is not confused with "job 12", and a job the fake never saw has none
    assert got == {"job 1": 7.5, "job 12": 5.0, "job 2": 0.0}
    assert generate_calls(records) == 3


def test_server_overhead_is_total_minus_every_attempt() -> None:
    # Given a finished job of 120 ms with two attempts (a failure and a success)
    job = {"timings": {"queued_ms": 5, "preprocess_ms": 3, "generate_ms": 100, "total_ms": 120},
           "attempts": [{"duration_ms": 30}, {"duration_ms": 50}]}
    # Then provider time is both attempts, and the overhead what is left; without timings it is not a number
    assert attempts_ms(job) == 80
    assert server_overhead_ms(job) == 40
    assert stage_split(job) == {"before preprocess": 5, "preprocess": 3, "generate without provider": 20}
    assert math.isnan(server_overhead_ms({"timings": {}, "attempts": []}))


def test_seed_policy_makes_at_most_two_calls_one_delay_apart() -> None:
    # Given calls that fail the given number of times before answering
    def failing(times: int) -> Callable[[], None]:
        made: list[int] = []

        def call() -> None:
            made.append(1)
            if len(made) <= times:
                raise ProviderUnavailable("503")

        return call

    slept: list[float] = []
    # When the seed's loop runs each
    results = [seed_policy(failing(n), sleep=slept.append) for n in (0, 1, 2)]
    # Then: first call answers; one failure then an answer; two failures and it gives up (never a third call)
    assert results == [(True, 1), (True, 2), (False, 2)]
    assert slept == [1.0, 1.0]


def test_seed_policy_against_the_fake_is_counted_at_the_fake() -> None:
    # Given the fake Gemini server failing every call, and the real SDK client pointed at it
    with FakeGeminiServer(FakeGeminiConfig(error_rate=1.0, seed=1)) as fake:
        provider = GeminiProvider(API_KEY, DEFAULT_MODEL, timeout_s=5.0, base_url=fake.base_url)
        request = EditRequest("edit", "grayscale (seed job 0)", (InputImage(b"\x89PNG not decoded", "image/png"),))
        try:
            # When one job runs under the seed's policy (no real sleeping)
            ok, calls = seed_policy(lambda: provider.edit(request), sleep=lambda _: None)
        finally:
            provider.close()
        # Then it failed after two calls, and the fake received exactly those two
        assert (ok, calls) == (False, 2)
        assert generate_calls(fake.requests()) == 2
