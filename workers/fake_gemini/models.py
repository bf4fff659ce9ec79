"""The fake's model knowledge: the model list, per-model `imageConfig` checks, output sizes and usageMetadata.

What each model accepts comes from the service's catalogue (`shared/models.toml`, the same facts the intake
checks), so the fake answers like Google for every model the catalogue lists: an option the model does not take
is a 400 INVALID_ARGUMENT naming the field, as the real API does; a retired model is not in the list (404).
Output sizes follow Google's published table for the Gemini 3 image models (1K; 2K and 4K are ×2 and ×4).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from shared.catalogue import Catalogue, ModelSpec, load_catalogue
from workers.fake_gemini import wire
from workers.fake_gemini.wire import GenerateRequest, Reply

# aspect ratio -> (width, height) at 1K.
SIZES_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200), "4:3": (1200, 896),
    "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376), "16:9": (1376, 768), "21:9": (1584, 672),
}
SCALE = {"1K": 1, "2K": 2, "4K": 4}
DEFAULT_IMAGE_TOKENS = 1290  # a model the catalogue does not list (what gemini-2.5-flash-image billed per image)
IMAGE_INPUT_TOKENS = 258  # per input image tile
THOUGHT_TOKENS = {"": 0, "MINIMAL": 48, "LOW": 96, "MEDIUM": 192, "HIGH": 384, "XHIGH": 768}


def catalogue() -> Catalogue:
    return load_catalogue("")


def current_models(today: dt.date | None = None) -> tuple[str, ...]:
    """Models the (fake) API serves: the catalogue's models that are not shut down."""
    day = today or dt.datetime.now(dt.UTC).date()
    return tuple(m.id for m in catalogue().available(day))


def model_list(names: Iterable[str]) -> Reply:
    """GET /v1beta/models: the ListModelsResponse shape (one page)."""
    cat = catalogue()
    models: list[dict[str, Any]] = []
    for name in names:
        spec = cat.get(name)
        models.append({"name": f"models/{name}", "displayName": spec.display_name if spec else name,
                       "version": "001", "inputTokenLimit": 65536, "outputTokenLimit": 32768,
                       "supportedGenerationMethods": ["generateContent", "countTokens"],
                       "thinking": bool(spec and spec.thinking_levels)})
    return wire.json_reply(200, {"models": models})


def _invalid(message: str) -> Reply:
    return wire.api_error(400, "INVALID_ARGUMENT", message)


def check_request(model: str, request: GenerateRequest) -> Reply | None:
    """400 INVALID_ARGUMENT when `request` asks `model` for something it does not accept (None = fine)."""
    spec = catalogue().get(model)
    if spec is None:
        return None  # a model the catalogue does not describe: accept anything, as before
    where = "* GenerateContentRequest.generation_config"
    if request.aspect_ratio and request.aspect_ratio not in spec.aspect_ratios:
        return _invalid(f"{where}.image_config.aspect_ratio: unsupported aspect ratio {request.aspect_ratio!r} "
                        f"for models/{model}; supported: {', '.join(spec.aspect_ratios)}.")
    if request.image_size and request.image_size not in spec.image_sizes:
        return _invalid(f"{where}.image_config.image_size: unsupported image size {request.image_size!r} for "
                        f"models/{model}; supported: {', '.join(spec.image_sizes)}.")
    level = request.thinking_level.lower()
    if level and level not in spec.thinking_levels:
        return _invalid(f"{where}.thinking_config.thinking_level: thinking level {request.thinking_level} is "
                        f"not supported for models/{model}.")
    if spec.max_reference_images and len(request.images) > spec.max_reference_images:
        return _invalid(f"* GenerateContentRequest.contents: models/{model} accepts at most "
                        f"{spec.max_reference_images} images per request; got {len(request.images)}.")
    return None


def output_size(request: GenerateRequest) -> tuple[int, int] | None:
    """The image size the request asked for (None when it set neither aspect ratio nor size)."""
    if not request.aspect_ratio and not request.image_size:
        return None
    width, height = SIZES_1K.get(request.aspect_ratio or "1:1", SIZES_1K["1:1"])
    scale = SCALE.get(request.image_size or "1K", 1)
    return width * scale, height * scale


def _spec(model: str) -> ModelSpec | None:
    return catalogue().get(model)


def usage_metadata(model: str, request: GenerateRequest, *, images_out: int, text_tokens: int) -> dict[str, Any]:
    """usageMetadata as the API reports it: prompt and output tokens by modality, thoughts when thinking."""
    spec = _spec(model)
    text_in = max(1, len(request.prompt.split()))
    image_in = IMAGE_INPUT_TOKENS * len(request.images)
    per_image = (spec.image_tokens.get(request.image_size or "1K") if spec else None) or DEFAULT_IMAGE_TOKENS
    image_out = per_image * images_out
    thinks = bool(spec and spec.thinking_levels)
    thoughts = THOUGHT_TOKENS.get(request.thinking_level.upper(), 0) or (THOUGHT_TOKENS["LOW"] if thinks else 0)
    prompt = text_in + image_in
    output = image_out + text_tokens
    meta: dict[str, Any] = {
        "promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output + thoughts,
        "promptTokensDetails": [d for d in ({"modality": "TEXT", "tokenCount": text_in},
                                            {"modality": "IMAGE", "tokenCount": image_in}) if d["tokenCount"]],
        "candidatesTokensDetails": [d for d in ({"modality": "TEXT", "tokenCount": text_tokens},
                                                {"modality": "IMAGE", "tokenCount": image_out}) if d["tokenCount"]],
    }
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    return meta
