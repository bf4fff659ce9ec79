"""The whole service on the gemini provider: real workers → real google-genai SDK → the fake Gemini server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import FIXTURES
from tests.e2e.test_pipeline import wait_done
from tests.support.stack import RedisServer, Stack, gemini_env, start_stack
from workers.fake_gemini.server import FakeGeminiServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gemini_stack(redis_server: RedisServer, fake: FakeGeminiServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(redis_server.url(4), tmp_path_factory.mktemp("gemini"),
                    **gemini_env(fake.base_url, NANOEDIT_GEMINI_TIMEOUT_S="5", NANOEDIT_MAX_RETRIES="1"))
    yield s
    s.stop()


def post(stack: Stack, instruction: str, scenario: str | None = None, **fields: str) -> str:
    resp = requests.post(f"{stack.url}/v1/jobs", timeout=30, data={"instruction": instruction, **fields},
                         files=[("image", ("a.png", (FIXTURES / "chelsea.png").read_bytes()))])
    assert resp.status_code == 202, resp.text
    assert resp.json()["provider"] == "gemini"
    return str(resp.json()["id"])


def test_gemini_job_succeeds_and_the_fake_saw_our_request(gemini_stack: Stack, fake: FakeGeminiServer) -> None:
    fake.reset()
    job = wait_done(gemini_stack, post(gemini_stack, "Make the cat wear a hat",
                                       image_description="A cat on a sofa"))
    assert job["status"] == "succeeded", (job, gemini_stack.logs())
    assert job["model"] == "gemini-3.1-flash-image"
    # usage as usageMetadata reported it, and its estimated cost at the catalogue's prices
    assert job["usage"]["output_image_tokens"] == 1120 and job["usage"]["prompt_tokens"] > 0
    assert job["cost_usd"] > 0 and job["cost_is_estimate"] is True
    assert job["attempts"][0]["usage"] == job["usage"]
    out = requests.get(f"{gemini_stack.url}{job['outputs'][0]['url']}", timeout=10)
    assert out.status_code == 200 and out.headers["Content-Type"].startswith("image/")
    [seen] = fake.requests()
    assert seen["model"] == "gemini-3.1-flash-image"
    assert "A cat on a sofa\n\nMake the cat wear a hat" in seen["prompt"]
    # The image went through preprocessing (re-encoded), so compare what the worker prepared, not the upload.
    prepared = gemini_stack.data_dir / "blobs" / "jobs" / job["id"] / "prepared" / "0"
    assert [i["sha256"] for i in seen["images"]] == [hashlib.sha256(prepared.read_bytes()).hexdigest()]


@pytest.mark.parametrize(("scenario", "code"), [("prompt_blocked", "content_blocked"),
                                                ("text_only", "no_image_generated"),
                                                ("invalid_key", "upstream_auth_error"),
                                                ("model_not_found", "model_unavailable")])
def test_permanent_provider_failures_fail_the_job_with_their_code(gemini_stack: Stack, fake: FakeGeminiServer,
                                                                  scenario: str, code: str) -> None:
    fake.configure(scenario=scenario)
    try:
        job = wait_done(gemini_stack, post(gemini_stack, "edit it"))
    finally:
        fake.configure(scenario="ok")
    assert job["status"] == "failed", job
    assert job["error"]["code"] == code and job["error"]["suggestion"]
    assert "test-key-not-real" not in str(job)


def test_transient_failure_is_retried_then_fails_with_attempts_recorded(gemini_stack: Stack,
                                                                        fake: FakeGeminiServer) -> None:
    fake.configure(scenario="overloaded")
    try:
        job = wait_done(gemini_stack, post(gemini_stack, "edit it"), timeout_s=90)
    finally:
        fake.configure(scenario="ok")
    assert job["status"] == "failed" and job["error"]["code"] == "upstream_unavailable"
    assert [a["n"] for a in job["attempts"]] == [1, 2]  # NANOEDIT_MAX_RETRIES=1


def test_options_reach_google_and_the_output_has_the_requested_shape(gemini_stack: Stack,
                                                                     fake: FakeGeminiServer) -> None:
    fake.reset()
    job = wait_done(gemini_stack, post(gemini_stack, "Widen it", model="gemini-2.5-flash-image",
                                       aspect_ratio="16:9", image_size="1K", thinking_level="high"))
    assert job["status"] == "succeeded", (job, gemini_stack.logs())
    assert (job["model_requested"], job["model"]) == ("gemini-2.5-flash-image", "gemini-3.1-flash-image")
    assert (job["outputs"][0]["width"], job["outputs"][0]["height"]) == (1376, 768)
    [seen] = fake.requests()
    assert seen["model"] == "gemini-3.1-flash-image"
    assert seen["generation_config"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "1K"}
