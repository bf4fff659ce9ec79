"""GeminiProvider through the real google-genai SDK against the fake Gemini server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from google.genai import errors as genai_errors
from PIL import Image

from tests.support.clocks import HookedClock
from workers.fake_gemini import FakeGeminiConfig, FakeGeminiServer
from workers.providers.base import (
    ContentBlocked,
    EditRequest,
    EmptyResponse,
    InputImage,
    InvalidProviderRequest,
    ModelUnavailable,
    NoImageGenerated,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhaustedForDay,
    SpendCapReached,
)
from workers.providers.gemini import (
    GeminiProvider,
    build_prompt,
    classify_api_error,
    parse_duration_s,
    sanitize,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
API_KEY = "AIzaSyFAKE-test-key-0123456789abcdefghijk"  # key-shaped, so redaction is exercised too
MODEL = "gemini-3.1-flash-image"


def png(size: tuple[int, int] = (32, 24), color: tuple[int, int, int] = (200, 40, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def edit_request(**overrides: Any) -> EditRequest:
    fields: dict[str, Any] = {"operation": "edit", "instruction": "make it blue",
                              "images": (InputImage(png(), "image/png"),)}
    fields.update(overrides)
    return EditRequest(**fields)


@pytest.fixture
def fake() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(FakeGeminiConfig(hang_s=5)) as server:
        yield server


@pytest.fixture
def provider(fake: FakeGeminiServer) -> Iterator[GeminiProvider]:
    p = GeminiProvider(API_KEY, MODEL, timeout_s=5, base_url=fake.base_url)
    yield p
    p.close()


def assert_no_key(error: BaseException) -> None:
    assert isinstance(error, ProviderError)
    for text in (str(error), repr(error), error.details, error.message, json.dumps(error.body())):
        assert API_KEY not in text
        assert "AIza" not in text
    # no chained SDK exception (its text embeds the upstream body, its response our request headers)
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


# --- success ----------------------------------------------------------------------------------------------

def test_ok_returns_the_edited_image(provider: GeminiProvider) -> None:
    # Given a real photo
    photo = (FIXTURES / "chelsea.png").read_bytes()
    # When the provider edits it
    result = provider.edit(edit_request(images=(InputImage(photo, "image/png"),)))
    # Then one decodable PNG comes back, different from the input but the same size
    assert len(result.images) == 1
    out = result.images[0]
    assert out.mime_type == "image/png"
    assert out.data != photo
    with Image.open(io.BytesIO(out.data)) as img, Image.open(io.BytesIO(photo)) as src:
        assert img.format == "PNG" and img.size == src.size
    assert result.text == "Here is the edited image."
    assert result.usage is not None
    assert result.usage.total_tokens == (
        result.usage.prompt_tokens + result.usage.output_tokens + result.usage.thinking_tokens)


def test_the_request_carries_our_images_prompt_and_model(fake: FakeGeminiServer,
                                                         provider: GeminiProvider) -> None:
    # Given a JPEG and a description
    jpeg = (FIXTURES / "rocket.jpg").read_bytes()
    request = edit_request(images=(InputImage(jpeg, "image/jpeg"),), image_description="a rocket launch",
                           instruction="add a rainbow")
    # When it is sent
    provider.edit(request)
    # Then the fake saw exactly our bytes, type, prompt and model, and asked for images
    (seen,) = fake.requests()
    assert seen["model"] == MODEL and seen["api_version"] == "v1beta"
    assert seen["prompt"] == "a rocket launch\n\nadd a rainbow"
    assert seen["images"] == [{"mime_type": "image/jpeg", "bytes": len(jpeg),
                               "sha256": hashlib.sha256(jpeg).hexdigest()}]
    assert seen["response_modalities"] == ["TEXT", "IMAGE"]
    assert seen["api_key_present"] is True and seen["server_timeout_s"] == "5"
    assert API_KEY not in json.dumps(fake.requests())


def test_compose_and_style_transfer_prefix_a_role_hint_and_keep_image_order(fake: FakeGeminiServer,
                                                                            provider: GeminiProvider) -> None:
    first, second = png(color=(1, 2, 3)), png(color=(9, 8, 7))
    images = (InputImage(first, "image/png"), InputImage(second, "image/png"))
    provider.edit(edit_request(operation="compose", instruction="put them side by side", images=images))
    provider.edit(edit_request(operation="style_transfer", instruction="keep the faces", images=images))
    compose, style = fake.requests()
    assert compose["prompt"] == "Compose these images: put them side by side"
    assert style["prompt"] == "Apply the style of the second image to the first: keep the faces"
    assert [i["sha256"] for i in style["images"]] == [hashlib.sha256(b).hexdigest() for b in (first, second)]


def test_thought_images_are_not_outputs(fake: FakeGeminiServer, provider: GeminiProvider) -> None:
    # Given a thinking model that sends an interim 'thought' image before the final one
    fake.configure(scenario="thinking")
    source = png(color=(0, 0, 0))
    # When the provider edits
    result = provider.edit(edit_request(images=(InputImage(source, "image/png"),)))
    # Then only the final (inverted) image is returned, and the thought text is not the text
    assert len(result.images) == 1
    with Image.open(io.BytesIO(result.images[0].data)) as img:
        assert img.getpixel((0, 0)) == (255, 255, 255)
    assert result.text == "Here is the edited image."


def test_build_prompt_formats() -> None:
    assert build_prompt(edit_request(instruction=" crop it ")) == "crop it"
    assert build_prompt(edit_request(image_description="a cat", instruction="crop")) == "a cat\n\ncrop"


# --- failures ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("scenario", "error_class"), [
    ("rate_limited", ProviderRateLimited),
    ("overloaded", ProviderUnavailable),
    ("internal", ProviderUnavailable),
    ("bad_gateway", ProviderUnavailable),
    ("invalid_key", ProviderAuthError),
    ("model_not_found", ModelUnavailable),
    ("text_only", NoImageGenerated),
    ("no_image", NoImageGenerated),
    ("empty", EmptyResponse),
    ("quota_day", QuotaExhaustedForDay),
    ("spend_cap", SpendCapReached),
    ("prompt_blocked", ContentBlocked),
    ("image_safety", ContentBlocked),
    ("safety", ContentBlocked),
])
def test_each_scenario_maps_to_its_error(fake: FakeGeminiServer, provider: GeminiProvider, scenario: str,
                                         error_class: type[ProviderError]) -> None:
    fake.configure(scenario=scenario)
    with pytest.raises(ProviderError) as caught:
        provider.edit(edit_request())
    assert type(caught.value) is error_class
    assert_no_key(caught.value)
    assert "<" not in caught.value.details  # no HTML, no raw bodies
    assert len(caught.value.details) <= 330


def test_rate_limit_carries_retry_info(fake: FakeGeminiServer, provider: GeminiProvider) -> None:
    fake.configure(scenario="rate_limited")
    with pytest.raises(ProviderRateLimited) as caught:
        provider.edit(edit_request())
    assert caught.value.retry_after_hint_s == 7.0
    assert caught.value.details.startswith("HTTP 429 RESOURCE_EXHAUSTED: You exceeded your current quota")


def test_the_sdk_does_not_retry_on_its_own(fake: FakeGeminiServer, provider: GeminiProvider) -> None:
    # Given an upstream that is overloaded (503 is in the SDK's retryable set)
    fake.configure(scenario="overloaded")
    # When one edit fails
    with pytest.raises(ProviderUnavailable):
        provider.edit(edit_request())
    # Then exactly one HTTP request was made
    assert fake.stats()["count"] == 1


def test_unknown_model_and_wrong_key(fake: FakeGeminiServer, provider: GeminiProvider) -> None:
    with pytest.raises(ModelUnavailable) as not_found:
        provider.edit(edit_request(model="gemini-no-such-model"))
    assert "models/gemini-no-such-model is not found" in not_found.value.details
    fake.configure(api_keys=["the-only-valid-key"])
    with pytest.raises(ProviderAuthError) as bad_key:
        provider.edit(edit_request())
    assert "API key not valid" in bad_key.value.details
    assert_no_key(bad_key.value)


def test_rpm_enforced_by_the_fake_becomes_rate_limited(fake: FakeGeminiServer,
                                                       provider: GeminiProvider) -> None:
    fake.configure(rpm=2)
    provider.edit(edit_request())
    provider.edit(edit_request())
    with pytest.raises(ProviderRateLimited) as caught:
        provider.edit(edit_request())
    assert caught.value.retry_after_hint_s is not None and 0 < caught.value.retry_after_hint_s <= 60
    assert fake.stats()["by_status"] == {"200": 2, "429": 1}


def test_hang_becomes_provider_timeout_quickly(fake: FakeGeminiServer) -> None:
    # Given an upstream that never answers and a 0.5 s timeout
    fake.configure(scenario="hang", hang_s=10)
    impatient = GeminiProvider(API_KEY, MODEL, timeout_s=0.5, base_url=fake.base_url)
    # When an edit is attempted
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        impatient.edit(edit_request())
    # Then it times out after about 0.5 s, once
    assert time.monotonic() - started < 2.5
    assert "0.5 s" in caught.value.details
    assert_no_key(caught.value)
    assert fake.stats()["count"] == 1
    impatient.close()


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = GeminiProvider(API_KEY, MODEL, timeout_s=2, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderUnavailable) as caught:
        dead.edit(edit_request())
    assert "connection" in caught.value.details
    assert_no_key(caught.value)
    dead.close()


def test_concurrent_calls_are_all_in_flight_at_once() -> None:
    # Given a fake whose simulated latency holds each request until four have arrived
    barrier = threading.Barrier(4)

    def sleep(_seconds: float) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)

    config = FakeGeminiConfig(latency_ms_mean=1, latency_ms_p99=1)
    with FakeGeminiServer(config, clock=HookedClock(sleep)) as fake:
        provider = GeminiProvider(API_KEY, MODEL, timeout_s=10, base_url=fake.base_url)
        # When four edits run concurrently through one provider (one shared SDK client)
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda _: provider.edit(edit_request()), range(4)))
        provider.close()
        # Then all succeeded and the fake saw four in flight at once
        assert all(len(r.images) == 1 for r in results)
        stats = fake.stats()
    assert stats["max_in_flight"] == 4 and stats["in_flight"] == 0 and stats["count"] == 4


# --- classification table -------------------------------------------------------------------------------

def api_error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None,
              ) -> genai_errors.APIError:
    body: dict[str, Any] = {"error": {"code": code, "status": status, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return genai_errors.ClientError(code, body) if code < 500 else genai_errors.ServerError(code, body)


@pytest.mark.parametrize(("code", "status", "message", "details", "error_class"), [
    (400, "INVALID_ARGUMENT", "Unable to process input image.", None, InvalidProviderRequest),
    (400, "INVALID_ARGUMENT", "bad key", [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                            "reason": "API_KEY_INVALID"}], ProviderAuthError),
    (401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", None, ProviderAuthError),
    (403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.", None, ProviderAuthError),
    (404, "NOT_FOUND", "models/x is not found", None, ModelUnavailable),
    (413, "", "too big", None, InvalidProviderRequest),
    (429, "RESOURCE_EXHAUSTED", "quota", None, ProviderRateLimited),
    (500, "INTERNAL", "oops", None, ProviderUnavailable),
    (502, "Bad Gateway", "<html>nope</html>", None, ProviderUnavailable),
    (503, "UNAVAILABLE", "The model is overloaded.", None, ProviderUnavailable),
    (504, "DEADLINE_EXCEEDED", "Deadline expired", None, ProviderUnavailable),
    (599, "", "", None, ProviderUnavailable),
])
def test_classification_table(code: int, status: str, message: str, details: list[dict[str, Any]] | None,
                              error_class: type[ProviderError]) -> None:
    error = classify_api_error(api_error(code, status, message, details))
    assert type(error) is error_class
    assert error.details.startswith(f"HTTP {code}")


def test_retry_delay_parsing() -> None:
    assert parse_duration_s("7s") == 7.0
    assert parse_duration_s("1.5s") == 1.5
    assert parse_duration_s("0.250s") == 0.25
    assert parse_duration_s("soon") is None and parse_duration_s(None) is None
    info = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]
    error = classify_api_error(api_error(429, "RESOURCE_EXHAUSTED", "quota", info))
    assert isinstance(error, ProviderRateLimited) and error.retry_after_hint_s == 1.5


def test_sanitize_strips_keys_html_and_length() -> None:
    assert API_KEY not in sanitize(f"bad key {API_KEY} here")
    assert "s3cr3t" not in sanitize("url?key=s3cr3t&x=1")
    assert "s3cr3t" not in sanitize("custom secret s3cr3t", secrets=["s3cr3t"])
    assert sanitize("API key not valid. Please pass a valid API key.") == (
        "API key not valid. Please pass a valid API key.")
    assert sanitize("<!DOCTYPE html><html>...</html>").startswith("non-JSON error body")
    assert len(sanitize("x" * 1000)) == 300
    error = classify_api_error(api_error(400, "INVALID_ARGUMENT", f"key {API_KEY} rejected"),
                               secrets=[API_KEY])
    assert API_KEY not in error.details
