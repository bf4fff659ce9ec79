"""Scenarios: what the fake answers to a decoded generateContent request, by name.

A scenario is a function `ScenarioContext -> Reply | None` registered under a name (`None` = the client went
away while we waited, so there is nothing to send). The server picks the config's scenario or the
`x-fake-scenario` request header. New scenarios are added with `@scenario("name")`; nothing else changes.

Bodies mirror what the real API returns in each situation (see `wire`), including the cases that are easy to
get wrong: a 200 with no candidates, a 200 whose candidate has no image, a blocked prompt with no candidates at
all, and a non-JSON 502 from a proxy.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from workers.fake_gemini import models, wire
from workers.fake_gemini.config import FakeGeminiConfig
from workers.fake_gemini.wire import GenerateRequest, Reply


@dataclass(frozen=True, slots=True)
class ScenarioContext:
    model: str
    api_version: str
    request: GenerateRequest
    config: FakeGeminiConfig
    rng: random.Random
    wait: Callable[[float], bool]  # interruptible wait; False = server stopping or client gone


ScenarioFn = Callable[[ScenarioContext], Reply | None]
SCENARIOS: dict[str, ScenarioFn] = {}


def scenario(name: str) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register a scenario under `name` (later registrations replace earlier ones)."""

    def register(fn: ScenarioFn) -> ScenarioFn:
        SCENARIOS[name] = fn
        return fn

    return register


def scenario_names() -> list[str]:
    return sorted(SCENARIOS)


def _usage(ctx: ScenarioContext, images_out: int, text_tokens: int = 0) -> dict[str, Any]:
    """usageMetadata per model and image_size (models.usage_metadata), e.g. 1120 IMAGE tokens per 1K image."""
    return models.usage_metadata(ctx.model, ctx.request, images_out=images_out, text_tokens=text_tokens)


def edited_image(request: GenerateRequest) -> bytes:
    """The 'edit': the first input image with its colours inverted, as PNG; a prompt-seeded tile if none.

    Raises ValueError when the first input image cannot be decoded."""
    if request.images:
        try:
            with Image.open(io.BytesIO(request.images[0].data)) as src:
                src.load()
                rgb = src.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError("undecodable input image") from exc
        out = ImageOps.invert(rgb)
    else:
        shade = hashlib.sha256(request.prompt.encode()).digest()
        out = Image.new("RGB", (64, 64), (shade[0], shade[1], shade[2]))
    size = models.output_size(request)
    if size is not None:  # the requested aspect ratio and size; blocky (cheap to encode, small as PNG)
        out.thumbnail((64, 64))
        out = out.resize(size, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


@scenario("ok")
def ok(ctx: ScenarioContext) -> Reply | None:
    """The inverted first image; text only when the request asked for modalities without IMAGE (as the API)."""
    modalities = {m.upper() for m in ctx.request.response_modalities}
    if modalities and "IMAGE" not in modalities:
        return text_only(ctx)
    try:
        png = edited_image(ctx.request)
    except ValueError:
        return wire.api_error(400, "INVALID_ARGUMENT", "Unable to process input image. Please retry or report "
                              "in https://developers.generativeai.google/guide/troubleshooting")
    parts = [wire.text_part("Here is the edited image."), wire.image_part(png)]
    return wire.candidate_reply(parts, "STOP", model=ctx.model, usage_metadata=_usage(ctx, 1, 8))


@scenario("thinking")
def thinking(ctx: ScenarioContext) -> Reply | None:
    """A thinking image model: an interim `thought` image before the final one (only the last is output)."""
    try:
        png = edited_image(ctx.request)
    except ValueError:
        return ok(ctx)
    draft = wire.image_part(edited_image(GenerateRequest(prompt="draft")))
    parts = [
        {**wire.text_part("Planning the edit."), "thought": True},
        {**draft, "thought": True},
        wire.text_part("Here is the edited image."),
        {**wire.image_part(png), "thoughtSignature": "ZmFrZS1zaWduYXR1cmU="},
    ]
    return wire.candidate_reply(parts, "STOP", model=ctx.model,
                                usage_metadata=_usage(ctx, 2, 12))


@scenario("slow")
def slow(ctx: ScenarioContext) -> Reply | None:
    if not ctx.wait(ctx.config.slow_ms / 1000):
        return None
    return ok(ctx)


@scenario("hang")
def hang(ctx: ScenarioContext) -> Reply | None:
    """Say nothing for `hang_s`; a client still waiting then gets the server-side deadline error."""
    if not ctx.wait(ctx.config.hang_s):
        return None
    return wire.deadline_exceeded()


@scenario("rate_limited")
def rate_limited(ctx: ScenarioContext) -> Reply | None:
    return wire.rate_limited(ctx.model, retry_after_s=7, limit=ctx.config.rpm or 10)


@scenario("quota_day")
def quota_day(ctx: ScenarioContext) -> Reply | None:
    """The per-day request quota is used up: 429 whose QuotaFailure names a PerDay quota."""
    return wire.rate_limited(ctx.model, retry_after_s=3600, limit=ctx.config.rpm or 250, per="Day")


@scenario("spend_cap")
def spend_cap(ctx: ScenarioContext) -> Reply | None:
    """The project's spend cap is reached: 429 whose QuotaFailure names a spend cap, RetryInfo = its window."""
    return wire.rate_limited(ctx.model, retry_after_s=3, limit=ctx.config.rpm or 1,
                             quota_id=wire.SPEND_CAP_QUOTA_ID, quota_metric=wire.SPEND_CAP_QUOTA_METRIC)


@scenario("overloaded")
def overloaded(ctx: ScenarioContext) -> Reply | None:
    return wire.overloaded()


@scenario("internal")
def internal(ctx: ScenarioContext) -> Reply | None:
    return wire.internal()


@scenario("bad_gateway")
def bad_gateway(ctx: ScenarioContext) -> Reply | None:
    return wire.bad_gateway()


@scenario("invalid_key")
def invalid_key(ctx: ScenarioContext) -> Reply | None:
    return wire.invalid_key()


@scenario("model_not_found")
def model_not_found(ctx: ScenarioContext) -> Reply | None:
    return wire.model_not_found(ctx.model, ctx.api_version)


@scenario("text_only")
def text_only(ctx: ScenarioContext) -> Reply | None:
    parts = [wire.text_part("I can describe the edit, but I did not generate an image this time.")]
    return wire.candidate_reply(parts, "STOP", model=ctx.model, usage_metadata=_usage(ctx, 0, 16))


@scenario("no_image")
def no_image(ctx: ScenarioContext) -> Reply | None:
    return wire.candidate_reply(None, "NO_IMAGE", model=ctx.model, usage_metadata=_usage(ctx, 0))


@scenario("image_safety")
def image_safety(ctx: ScenarioContext) -> Reply | None:
    return wire.candidate_reply(None, "IMAGE_SAFETY", model=ctx.model, usage_metadata=_usage(ctx, 0))


@scenario("safety")
def safety(ctx: ScenarioContext) -> Reply | None:
    return wire.candidate_reply(None, "SAFETY", model=ctx.model, usage_metadata=_usage(ctx, 0))


@scenario("prompt_blocked")
def prompt_blocked(ctx: ScenarioContext) -> Reply | None:
    """A blocked prompt: promptFeedback.blockReason and no candidates at all."""
    ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]
    body = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": ratings},
            "usageMetadata": {"promptTokenCount": _usage(ctx, 0)["promptTokenCount"], "totalTokenCount": 0},
            "modelVersion": ctx.model}
    return wire.json_reply(200, body)


@scenario("empty")
def empty(ctx: ScenarioContext) -> Reply | None:
    return Reply(200, json.dumps({"candidates": []}).encode())
