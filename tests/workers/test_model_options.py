"""Per-job model options through the real google-genai SDK to the fake Gemini server: what reaches the wire,
what the fake refuses like Google, the model list, usage by size, and the catalogue's cost estimate."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import types
from PIL import Image

from shared.catalogue import check_options, estimate_cost_usd, load_catalogue
from shared.errors import ClientInputError
from shared.jobs.options import JobOptions, Usage
from workers.fake_gemini import FakeGeminiConfig, FakeGeminiServer
from workers.providers.base import EditRequest, InputImage, InvalidProviderRequest, ModelUnavailable
from workers.providers.gemini import GeminiProvider

API_KEY = "AIzaSyFAKE-test-key-0123456789abcdefghijk"
TODAY = dt.date(2026, 11, 30)


def png(size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 10)).save(buf, format="PNG")
    return buf.getvalue()


def request(model: str = "", images: int = 1, **options: Any) -> EditRequest:
    return EditRequest(operation="edit", instruction="make it blue", model=model,
                       images=tuple(InputImage(png(), "image/png") for _ in range(images)),
                       options=JobOptions(**options))


@pytest.fixture
def fake() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(FakeGeminiConfig(hang_s=5)) as server:
        yield server


def provider_for(fake: FakeGeminiServer, model: str = "gemini-3.1-flash-image") -> GeminiProvider:
    return GeminiProvider(API_KEY, model, timeout_s=5, base_url=fake.base_url)


def test_every_option_reaches_the_request_body_as_google_names_it(fake: FakeGeminiServer) -> None:
    p = provider_for(fake)
    try:
        result = p.edit(request(aspect_ratio="16:9", image_size="2K", thinking_level="high"))
    finally:
        p.close()
    (seen,) = fake.requests()
    config = seen["generation_config"]
    assert config["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
    # google-genai 3.3.0 sends this one field snake_case (proto JSON accepts both spellings; so does the fake)
    assert config["thinkingConfig"] in ({"thinkingLevel": "HIGH"}, {"thinking_level": "HIGH"})
    assert config["responseModalities"] == ["TEXT", "IMAGE"]
    # the image comes back at the requested ratio and size (16:9 at 2K = 2752×1536)
    with Image.open(io.BytesIO(result.images[0].data)) as img:
        assert img.size == (2752, 1536)
    # and usage is what usageMetadata said: 1680 IMAGE tokens for one 2K image, thinking counted
    assert result.usage is not None
    assert result.usage.output_image_tokens == 1680 and result.usage.thinking_tokens > 0
    assert result.usage.prompt_image_tokens == 258


def test_no_options_send_no_image_config(fake: FakeGeminiServer) -> None:
    p = provider_for(fake)
    try:
        p.edit(request())
    finally:
        p.close()
    (seen,) = fake.requests()
    assert "imageConfig" not in seen["generation_config"] and "thinkingConfig" not in seen["generation_config"]


@pytest.mark.parametrize(("model", "options"), [
    ("gemini-3.1-flash-lite-image", {"image_size": "4K"}),
    ("gemini-3.1-flash-image", {"aspect_ratio": "7:3"}),
    ("gemini-3-pro-image", {"thinking_level": "minimal"}),
])
def test_the_fake_refuses_what_the_model_does_not_accept_like_google(fake: FakeGeminiServer, model: str,
                                                                      options: dict[str, Any]) -> None:
    p = provider_for(fake, model)
    try:
        with pytest.raises(InvalidProviderRequest, match="INVALID_ARGUMENT"):
            p.edit(request(model=model, **options))
    finally:
        p.close()


def test_the_fake_refuses_more_reference_images_than_the_model_takes(fake: FakeGeminiServer) -> None:
    p = provider_for(fake)
    try:
        with pytest.raises(InvalidProviderRequest, match="at most 14"):
            p.edit(request(images=15))
    finally:
        p.close()


def test_a_retired_model_is_404_at_the_fake(fake: FakeGeminiServer) -> None:
    p = provider_for(fake, "gemini-2.5-flash-image")
    try:
        with pytest.raises(ModelUnavailable):
            p.edit(request())
    finally:
        p.close()


def test_the_sdk_lists_the_fake_models(fake: FakeGeminiServer) -> None:
    client = genai.Client(api_key=API_KEY, vertexai=False,
                          http_options=types.HttpOptions(api_version="v1beta", base_url=fake.base_url))
    try:
        names = {m.name for m in client.models.list()}
    finally:
        client.close()
    assert names == {"models/gemini-3.1-flash-image", "models/gemini-3-pro-image",
                     "models/gemini-3.1-flash-lite-image"}


# --- the catalogue --------------------------------------------------------------------------------------

def test_a_retired_model_resolves_to_its_replacement_and_says_what_was_asked() -> None:
    cat = load_catalogue()
    resolved = cat.resolve("models/gemini-2.5-flash-image", TODAY)
    assert (resolved.model.id, resolved.requested) == ("gemini-3.1-flash-image", "gemini-2.5-flash-image")
    assert cat.resolve("gemini-2.5-flash-image", dt.date(2026, 10, 1)).model.id == "gemini-2.5-flash-image"
    assert cat.resolve("", TODAY).model.id == cat.default == "gemini-3.1-flash-image"


def test_a_retired_model_without_replacement_is_model_retired() -> None:
    from shared.catalogue import parse_catalogue

    cat = parse_catalogue({"default": "a", "models": {"a": {}, "old": {"shutdown_on": dt.date(2026, 1, 1)}}})
    with pytest.raises(ClientInputError) as err:
        cat.resolve("old", TODAY)
    assert err.value.code == "model_retired" and err.value.status == 422 and "a" in err.value.suggestion


@pytest.mark.parametrize(("model", "options", "images", "allowed"), [
    ("gemini-3.1-flash-lite-image", JobOptions(image_size="2K"), 1, "1K"),
    ("gemini-3.1-flash-image", JobOptions(aspect_ratio="7:3"), 1, "21:9"),
    ("gemini-3.1-flash-image", JobOptions(thinking_level="max"), 1, "minimal, high"),
])
def test_invalid_options_are_422_with_the_allowed_values(model: str, options: JobOptions, images: int,
                                                         allowed: str) -> None:
    spec = load_catalogue().get(model)
    assert spec is not None
    with pytest.raises(ClientInputError) as err:
        check_options(spec, options, images)
    assert err.value.code == "invalid_option" and err.value.status == 422 and allowed in err.value.suggestion


def test_cost_adds_prompt_output_and_image_tokens_at_catalogue_prices() -> None:
    cat = load_catalogue()
    usage = Usage(prompt_tokens=1000, prompt_image_tokens=258, output_tokens=1128, output_image_tokens=1120,
                  thinking_tokens=100, total_tokens=2228)
    flash = cat.get("gemini-3.1-flash-image")
    # 1000 × 0.50 + (8 + 100) × 3.00 + 1120 × 60.00, per million
    assert estimate_cost_usd(flash, usage, 1, "1K") == pytest.approx((500 + 324 + 67200) / 1e6)
    lite = cat.get("gemini-3.1-flash-lite-image")
    # flat per-image price replaces the image tokens
    assert estimate_cost_usd(lite, usage, 1, "1K") == pytest.approx((250 + 162) / 1e6 + 0.02)
    assert estimate_cost_usd(None, usage, 1, "1K") is None


def test_a_models_file_replaces_the_catalogue_and_a_bad_one_fails_start_up(tmp_path: Path) -> None:
    from shared.catalogue import CatalogueError, check_configured
    from shared.settings import Settings

    good = tmp_path / "models.toml"
    good.write_text('default = "m1"\n[models.m1]\nimage_sizes = ["1K"]\n[models.m1.price]\ninput_per_mtok = 1\n'
                    'source = "test"\nas_of = "2026-11-30"\n')
    cat = check_configured(str(good), "m1", TODAY)
    assert cat.default == "m1" and cat.source == str(good)
    assert Settings.from_env({"NANOEDIT_MODELS_FILE": str(good)}).models_file == str(good)
    with pytest.raises(CatalogueError, match="NANOEDIT_GEMINI_MODEL"):
        check_configured(str(good), "gemini-3.1-flash-image", TODAY)
    bad = tmp_path / "bad.toml"
    bad.write_text("default = \n")
    with pytest.raises(CatalogueError, match=r"bad\.toml"):
        check_configured(str(bad), "m1", TODAY)


def test_an_answer_without_an_image_still_reports_its_usage(no_image_fake: FakeGeminiServer) -> None:
    from workers.providers.base import NoImageGenerated

    p = provider_for(no_image_fake)
    try:
        with pytest.raises(NoImageGenerated) as err:
            p.edit(EditRequest(operation="edit", instruction="x", images=(InputImage(png(), "image/png"),)))
    finally:
        p.close()
    assert err.value.usage is not None and err.value.usage.prompt_tokens > 0  # billed: the job counts it


@pytest.fixture
def no_image_fake() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(FakeGeminiConfig(hang_s=5, scenario="no_image")) as server:
        yield server
