"""Usage and cost through the pipeline: each answered call's usage is stored on its attempt, the job sums them
over retries and outputs, and the owner's daily counters (GET /v1/usage) add up the same."""

from __future__ import annotations

import dataclasses

import pytest
import redis

from shared.blobs import input_key
from shared.catalogue import estimate_cost_usd, load_catalogue
from shared.clock import FakeClock
from shared.jobs.model import InputMeta, Job
from shared.jobs.options import JobOptions, Usage
from shared.jobs.view import public_view
from shared.usage_ledger import UsageLedger, days_of
from tests.workers.test_pipeline import PNG, make_ctx, run_all
from workers.providers.base import EditRequest, EditResult, NoImageGenerated, ProviderUnavailable
from workers.providers.stub import ScriptedProvider

MODEL = "gemini-3.1-flash-image"
USAGE = Usage(prompt_tokens=270, prompt_image_tokens=258, output_tokens=1688, output_image_tokens=1680,
              thinking_tokens=96, total_tokens=2054)


class MeteredProvider(ScriptedProvider):
    def edit(self, request: EditRequest) -> EditResult:
        return dataclasses.replace(super().edit(request), usage=USAGE)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class NoImageAnswer(ScriptedProvider):
    """Answered without an image (billed, usage reported)."""

    def edit(self, request: EditRequest) -> EditResult:
        self.calls.append(request)
        if len(self.calls) == 1:
            exc = NoImageGenerated("no image (finishReason=NO_IMAGE)")
            exc.usage = Usage(prompt_tokens=270, total_tokens=270)
            raise exc
        return EditResult(images=(self._image,), usage=USAGE)


def test_a_billed_answer_without_an_image_counts_in_the_jobs_usage(redis_db: redis.Redis, clock: FakeClock) -> None:
    ctx = make_ctx(redis_db, clock, NoImageAnswer(image=PNG), retry_base_s=0.01)
    job_id = "c" * 32
    now = clock.now()
    ctx.blobs.put(input_key(job_id, 0), PNG)
    ctx.store.create(Job(id=job_id, owner="k2", status="queued", stage="queued", operation="edit", num_images=1,
                         instruction="grayscale", image_description="", created_at=now, expires_at=now + 3600,
                         deadline_at=now + 600, inputs=[InputMeta(0, "image/png", len(PNG), 451, 300, "x")],
                         provider="gemini", model=MODEL))
    run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    # no_image is not retried (ERROR_TABLE), so the job fails, but the answered call's tokens are still counted
    assert job is not None and job.status == "failed" and job.billed_calls == 1
    view = public_view(job)
    assert [a["outcome"] for a in view["attempts"]] == ["no_image"]
    assert view["usage"]["prompt_tokens"] == 270 and view["cost_usd"] > 0
    ledger = UsageLedger(redis_db, "t", clock)
    assert ledger.totals("k2", days_of("day", ledger.today())).calls == 1


def test_usage_and_cost_add_up_across_retries_and_outputs(redis_db: redis.Redis, clock: FakeClock) -> None:
    # Given a 2-output job at 2K whose first call fails once (no answer, no usage) before succeeding
    provider = MeteredProvider(ProviderUnavailable("503"), "ok", "ok", image=PNG)
    ctx = make_ctx(redis_db, clock, provider, retry_base_s=0.01)
    job_id = "b" * 32
    now = clock.now()
    ctx.blobs.put(input_key(job_id, 0), PNG)
    ctx.store.create(Job(id=job_id, owner="k1", status="queued", stage="queued", operation="edit", num_images=2,
                         instruction="grayscale", image_description="", created_at=now, expires_at=now + 3600,
                         deadline_at=now + 600, inputs=[InputMeta(0, "image/png", len(PNG), 451, 300, "x")],
                         provider="gemini", model=MODEL, options=JobOptions(image_size="2K")))
    # When it runs
    run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "succeeded"
    # Then the options reached the provider, and two answered calls are counted (the 503 had no usage)
    assert all(call.options.image_size == "2K" for call in provider.calls)
    view = public_view(job)
    assert [a["usage"] is not None for a in view["attempts"]] == [False, True, True]
    assert view["usage"] == (USAGE + USAGE).to_dict()
    one = estimate_cost_usd(load_catalogue().get(MODEL), USAGE, 1, "2K")
    assert one and view["cost_usd"] == pytest.approx(2 * one) and view["cost_is_estimate"] is True
    # and the owner's day totals say the same
    ledger = UsageLedger(redis_db, "t", clock)
    totals = ledger.totals("k1", days_of("day", ledger.today()))
    assert totals.calls == 2 and totals.usage == USAGE + USAGE and totals.cost_usd == pytest.approx(2 * one)
    assert ledger.owners(days_of("month", ledger.today())) == ["k1"]
