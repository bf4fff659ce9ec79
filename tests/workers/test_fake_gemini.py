"""The fake Gemini server: wire format, scenarios, pacing, recording, control plane and CLI."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from PIL import Image

from shared.clock import FakeClock
from tests.support.clocks import HookedClock
from workers.fake_gemini import FakeConfigError, FakeGeminiConfig, FakeGeminiServer, scenario_names
from workers.fake_gemini.cli import build_parser, config_from_args
from workers.fake_gemini.pacing import LatencyModel

ROOT = Path(__file__).resolve().parents[2]
KEY = "fake-key-for-tests"
MODEL = "gemini-3.1-flash-image"


def png(color: tuple[int, int, int] = (10, 200, 30), size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def generate(server: FakeGeminiServer, body: dict[str, Any], *, model: str = MODEL, key: str | None = KEY,
             headers: dict[str, str] | None = None, timeout: float = 5) -> requests.Response:
    sent = dict(headers or {})
    if key is not None:
        sent["x-goog-api-key"] = key
    return requests.post(f"{server.base_url}/v1beta/models/{model}:generateContent", json=body, headers=sent,
                         timeout=timeout)


def body_with_image(data: bytes, *, camel: bool = True, urlsafe: bool = False, text: str = "invert it",
                    ) -> dict[str, Any]:
    encoded = (base64.urlsafe_b64encode(data).decode().rstrip("=") if urlsafe
               else base64.b64encode(data).decode())
    blob_key, mime_key = ("inlineData", "mimeType") if camel else ("inline_data", "mime_type")
    return {"contents": [{"role": "user", "parts": [{"text": text},
                                                    {blob_key: {mime_key: "image/png", "data": encoded}}]}]}


@pytest.fixture
def fake() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(FakeGeminiConfig(hang_s=5)) as server:
        yield server


# --- wire format ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("camel", "urlsafe"), [(True, False), (False, False), (True, True), (False, True)])
def test_ok_accepts_both_casings_and_base64_flavours(fake: FakeGeminiServer, camel: bool,
                                                     urlsafe: bool) -> None:
    # Given an image with bytes that differ between standard and URL-safe base64
    image = png(color=(251, 255, 254))
    # When it is sent in either casing and encoding
    resp = generate(fake, body_with_image(image, camel=camel, urlsafe=urlsafe))
    # Then the answer is a real-shaped candidate with the inverted image (camelCase, standard base64)
    assert resp.status_code == 200, resp.text
    payload = resp.json()
    candidate = payload["candidates"][0]
    assert candidate["finishReason"] == "STOP" and candidate["content"]["role"] == "model"
    text_part, image_part = candidate["content"]["parts"]
    assert text_part["text"]
    assert image_part["inlineData"]["mimeType"] == "image/png"
    out = base64.b64decode(image_part["inlineData"]["data"], validate=True)
    with Image.open(io.BytesIO(out)) as img:
        assert img.getpixel((0, 0)) == (4, 0, 1)
    assert {"promptTokenCount", "candidatesTokenCount", "totalTokenCount", "promptTokensDetails",
            "candidatesTokensDetails"} <= set(payload["usageMetadata"])
    assert payload["modelVersion"] == MODEL
    (seen,) = fake.requests()
    assert seen["images"][0]["sha256"] == hashlib.sha256(image).hexdigest()
    assert seen["prompt"] == "invert it"


def test_text_only_modalities_get_no_image(fake: FakeGeminiServer) -> None:
    body = {**body_with_image(png()), "generationConfig": {"responseModalities": ["TEXT"]}}
    parts = generate(fake, body).json()["candidates"][0]["content"]["parts"]
    assert [list(p) for p in parts] == [["text"]]


def test_missing_key_is_permission_denied_as_the_real_api_answers(fake: FakeGeminiServer) -> None:
    resp = generate(fake, body_with_image(png()), key=None)
    assert resp.status_code == 403
    error = resp.json()["error"]
    assert error["status"] == "PERMISSION_DENIED" and error["code"] == 403
    assert "unregistered callers" in error["message"]
    assert fake.requests()[0]["api_key_present"] is False


def test_wrong_key_is_api_key_invalid_and_never_stored(fake: FakeGeminiServer) -> None:
    fake.configure(api_keys=["the-right-key"])
    resp = generate(fake, body_with_image(png()), key="a-wrong-key")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["message"].startswith("API key not valid")
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    dumped = json.dumps([fake.requests(), fake.config.as_dict()])
    assert "a-wrong-key" not in dumped and "the-right-key" not in dumped
    assert generate(fake, body_with_image(png()), key="the-right-key").status_code == 200


def test_unknown_model_is_not_found(fake: FakeGeminiServer) -> None:
    resp = generate(fake, body_with_image(png()), model="gemini-9-ultra")
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["status"] == "NOT_FOUND"
    assert error["message"].startswith("models/gemini-9-ultra is not found for API version v1beta")


def test_malformed_bodies_are_invalid_argument(fake: FakeGeminiServer) -> None:
    not_json = requests.post(f"{fake.base_url}/v1beta/models/{MODEL}:generateContent", data=b"{nope",
                             headers={"x-goog-api-key": KEY}, timeout=5)
    bad_b64 = generate(fake, {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png",
                                                                      "data": "!!!"}}]}]})
    no_contents = generate(fake, {})
    for resp in (not_json, bad_b64, no_contents):
        assert resp.status_code == 400 and resp.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_unknown_route_is_json_not_found(fake: FakeGeminiServer) -> None:
    resp = requests.get(f"{fake.base_url}/v1beta/tunedModels", timeout=5)
    assert resp.status_code == 404 and resp.json()["error"]["status"] == "NOT_FOUND"


# --- scenarios --------------------------------------------------------------------------------------------

def test_header_overrides_the_scenario_for_one_request(fake: FakeGeminiServer) -> None:
    limited = generate(fake, body_with_image(png()), headers={"x-fake-scenario": "rate_limited"})
    normal = generate(fake, body_with_image(png()))
    assert limited.status_code == 429 and normal.status_code == 200
    error = limited.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    types_ = [d["@type"] for d in error["details"]]
    assert "type.googleapis.com/google.rpc.QuotaFailure" in types_
    retry = next(d for d in error["details"] if d["@type"].endswith("RetryInfo"))
    assert retry["retryDelay"] == "7s"
    assert [r["scenario"] for r in fake.requests()] == ["rate_limited", "ok"]


@pytest.mark.parametrize(("scenario", "status", "check"), [
    ("overloaded", 503, lambda b: b["error"]["status"] == "UNAVAILABLE"),
    ("internal", 500, lambda b: b["error"]["status"] == "INTERNAL"),
    ("model_not_found", 404, lambda b: b["error"]["status"] == "NOT_FOUND"),
    ("text_only", 200, lambda b: [list(p) for p in b["candidates"][0]["content"]["parts"]] == [["text"]]),
    ("no_image", 200, lambda b: b["candidates"][0]["finishReason"] == "NO_IMAGE"),
    ("image_safety", 200, lambda b: b["candidates"][0]["finishReason"] == "IMAGE_SAFETY"),
    ("prompt_blocked", 200, lambda b: b["promptFeedback"]["blockReason"] == "SAFETY" and "candidates" not in b),
    ("empty", 200, lambda b: b == {"candidates": []}),
])
def test_scenario_bodies_are_real_shaped(fake: FakeGeminiServer, scenario: str, status: int,
                                         check: Any) -> None:
    resp = generate(fake, body_with_image(png()), headers={"x-fake-scenario": scenario})
    assert resp.status_code == status
    assert check(resp.json())


def test_bad_gateway_is_html(fake: FakeGeminiServer) -> None:
    resp = generate(fake, body_with_image(png()), headers={"x-fake-scenario": "bad_gateway"})
    assert resp.status_code == 502
    assert resp.headers["Content-Type"].startswith("text/html") and resp.text.startswith("<!DOCTYPE html>")


def test_error_and_timeout_rates() -> None:
    config = FakeGeminiConfig(error_rate=1.0, seed=7, hang_s=0.1)
    with FakeGeminiServer(config) as fake:
        statuses = {generate(fake, body_with_image(png())).status_code for _ in range(12)}
        assert statuses == {500, 503}
        fake.configure(error_rate=0.0, timeout_rate=1.0)
        hung = generate(fake, body_with_image(png()))
        assert hung.status_code == 504 and hung.json()["error"]["status"] == "DEADLINE_EXCEEDED"


def test_unknown_scenario_is_refused(fake: FakeGeminiServer) -> None:
    resp = generate(fake, body_with_image(png()), headers={"x-fake-scenario": "nope"})
    assert resp.status_code == 400 and "Unknown fake scenario" in resp.json()["error"]["message"]
    with pytest.raises(FakeConfigError):
        fake.configure(scenario="nope")
    assert {"ok", "hang", "rate_limited", "bad_gateway", "empty"} <= set(scenario_names())


# --- pacing -----------------------------------------------------------------------------------------------

def test_latency_model_matches_mean_and_p99() -> None:
    rng = random.Random(1)
    model = LatencyModel(mean_ms=800, p99_ms=4000)
    samples = sorted(model.sample_ms(rng) for _ in range(40_000))
    assert statistics.fmean(samples) == pytest.approx(800, rel=0.05)
    assert samples[int(0.99 * len(samples))] == pytest.approx(4000, rel=0.1)
    assert LatencyModel(100, 50).sample_ms(rng) == 100
    assert LatencyModel(0, 0).sample_ms(rng) == 0


def test_latency_goes_through_the_injected_sleep() -> None:
    slept: list[float] = []
    with FakeGeminiServer(FakeGeminiConfig(latency_ms_mean=200, latency_ms_p99=200),
                          clock=HookedClock(slept.append)) as fake:
        started = time.monotonic()
        assert generate(fake, body_with_image(png())).status_code == 200
        assert time.monotonic() - started < 0.2  # nothing really slept
    assert sum(slept) == pytest.approx(0.2)


def test_slow_scenario_waits_slow_ms_then_answers() -> None:
    slept: list[float] = []
    with FakeGeminiServer(FakeGeminiConfig(scenario="slow", slow_ms=3000), clock=HookedClock(slept.append)) as fake:
        assert generate(fake, body_with_image(png())).status_code == 200
    assert sum(slept) == pytest.approx(3.0)


def test_rpm_window_with_an_injected_clock() -> None:
    clock = FakeClock(1000.0)
    with FakeGeminiServer(FakeGeminiConfig(rpm=2), clock=clock) as fake:
        assert [generate(fake, body_with_image(png())).status_code for _ in range(2)] == [200, 200]
        clock.advance(10)
        limited = generate(fake, body_with_image(png()))
        assert limited.status_code == 429
        retry = next(d for d in limited.json()["error"]["details"] if d["@type"].endswith("RetryInfo"))
        assert retry["retryDelay"] == "50s"
        clock.advance(51)
        assert generate(fake, body_with_image(png())).status_code == 200


def test_stop_interrupts_a_hang() -> None:
    # Given a request hanging for 300 s
    fake = FakeGeminiServer(FakeGeminiConfig(scenario="hang", hang_s=300)).start()
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(generate(fake, body_with_image(png()), timeout=30).status_code)
        except requests.RequestException as exc:
            outcome.append(type(exc))

    client = threading.Thread(target=call)
    client.start()
    deadline = time.monotonic() + 5
    while fake.stats()["in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    # When the server stops
    started = time.monotonic()
    fake.stop()
    client.join(timeout=5)
    # Then shutdown is quick and the client is released without an answer
    assert time.monotonic() - started < 2
    assert not client.is_alive()
    assert outcome and outcome[0] != 504


def test_max_in_flight_with_concurrent_raw_requests() -> None:
    barrier = threading.Barrier(3)

    def sleep(_seconds: float) -> None:
        barrier.wait(timeout=5)

    with FakeGeminiServer(FakeGeminiConfig(latency_ms_mean=1), clock=HookedClock(sleep)) as fake:
        threads = [threading.Thread(target=generate, args=(fake, body_with_image(png()))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert fake.stats() == {"count": 3, "in_flight": 0, "max_in_flight": 3, "by_status": {"200": 3}}


# --- control plane ----------------------------------------------------------------------------------------

def test_control_routes(fake: FakeGeminiServer) -> None:
    base = fake.base_url
    changed = requests.post(f"{base}/_fake/config", json={"scenario": "overloaded", "rpm": 5}, timeout=5)
    assert changed.status_code == 200 and changed.json()["scenario"] == "overloaded"
    assert requests.post(f"{base}/_fake/config", json={"nope": 1}, timeout=5).status_code == 400
    assert requests.post(f"{base}/_fake/config", json={"error_rate": 2}, timeout=5).status_code == 400
    assert generate(fake, body_with_image(png())).status_code == 503
    stats = requests.get(f"{base}/_fake/stats", timeout=5).json()
    assert stats == {"count": 1, "in_flight": 0, "max_in_flight": 1, "by_status": {"503": 1}}
    listed = requests.get(f"{base}/_fake/requests", timeout=5).json()["requests"]
    assert listed[0]["status"] == 503 and listed[0]["model"] == MODEL
    assert requests.post(f"{base}/_fake/reset", timeout=5).json() == {"reset": True}
    assert requests.get(f"{base}/_fake/stats", timeout=5).json()["count"] == 0
    assert requests.get(f"{base}/_fake/requests", timeout=5).json() == {"requests": []}


def test_real_sdk_against_the_fake_with_a_scenario_header(fake: FakeGeminiServer) -> None:
    # The SDK's own headers option carries the override, so one server can serve several behaviours.
    options = types.HttpOptions(base_url=fake.base_url, api_version="v1beta", timeout=5000,
                                headers={"x-fake-scenario": "model_not_found"})
    client = genai.Client(api_key=KEY, vertexai=False, http_options=options)
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="hello")
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"
    client.close()


# --- CLI --------------------------------------------------------------------------------------------------

def test_cli_arguments_build_the_config() -> None:
    args = build_parser().parse_args(["--latency-ms", "200,900", "--error-rate", "0.1", "--rpm", "30",
                                      "--scenario", "slow", "--models", "a,b", "--seed", "3"])
    config = config_from_args(args)
    assert (config.latency_ms_mean, config.latency_ms_p99) == (200, 900)
    assert config.error_rate == 0.1 and config.rpm == 30 and config.scenario == "slow"
    assert config.known_models == ("a", "b") and config.seed == 3
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--error-rate", "3"])


def test_python_dash_m_serves_until_terminated() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "workers.fake_gemini", "--port", "0", "--scenario",
                             "overloaded"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("fake-gemini listening on http://127.0.0.1:")
        base_url = line.rsplit(" ", 1)[1]
        assert requests.get(f"{base_url}/_fake/config", timeout=5).json()["scenario"] == "overloaded"
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
