"""The OpenAPI parts of the model catalogue: GET /v1/models, the per-job option fields and the job's usage.

Enums are the union over the catalogue's models (each model's own lists are in GET /v1/models); a value a
chosen model does not take is refused with 422 invalid_option, which no schema can say per model.
"""

from __future__ import annotations

from typing import Any

from api.openapi_parts import _json, _nullable, _obj, _op, _ref, _responses
from shared.catalogue import load_catalogue
from shared.jobs.options import OUTPUT_FORMATS
from shared.settings import Settings

_NOTE = " Empty means the model's default. A value the chosen model does not accept is 422 invalid_option."


def _union(values: list[tuple[str, ...]]) -> list[str]:
    seen: dict[str, None] = {}
    for group in values:
        seen.update(dict.fromkeys(group))
    return list(seen)


def option_fields(s: Settings) -> dict[str, Any]:
    """The submission's option fields (JSON and multipart), as api/intake.py accepts them."""
    cat = load_catalogue(s.models_file)
    specs = list(cat.models.values())
    return {
        "model": {"type": "string", "enum": ["", *cat.models],
                  "description": "The image model (GET /v1/models); empty = the configured default. A retired "
                                 "model runs on its replacement (the job shows model_requested and model); one "
                                 "without a replacement is 422 model_retired."},
        "aspect_ratio": {"type": "string", "enum": ["", *_union([m.aspect_ratios for m in specs])],
                         "description": "Output aspect ratio (ImageConfig.aspect_ratio)." + _NOTE},
        "image_size": {"type": "string", "enum": ["", *_union([m.image_sizes for m in specs])],
                       "description": "Output size (ImageConfig.image_size)." + _NOTE},
        "thinking_level": {"type": "string", "enum": ["", *_union([m.thinking_levels for m in specs])],
                           "description": "How much the model thinks (ThinkingConfig.thinking_level)." + _NOTE},
        "output_format": {"type": "string", "enum": ["", *OUTPUT_FORMATS],
                          "description": "Convert each output to this format in the worker; empty = the model's "
                                         "bytes untouched."},
        "quality": {"type": "integer", "minimum": 1, "maximum": 100,
                    "description": "JPEG/WebP quality (default 90); only with output_format jpeg or webp (else 422 "
                                   "invalid_option)."},
    }


def _usage_schema() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    return _obj({name: count for name in ("prompt_tokens", "prompt_image_tokens", "output_tokens",
                                          "output_image_tokens", "thinking_tokens", "total_tokens")},
                description="Tokens as the provider's usageMetadata reports them (output includes output_image; "
                            "thinking is separate).")


def job_fields() -> dict[str, Any]:
    """Fields the catalogue adds to the Job schema."""
    return {
        "model_requested": _nullable("string", description="The model the request named, when it named one "
                                                           "(differs from `model` when it was retired)."),
        "options": _obj({"aspect_ratio": _nullable("string"), "image_size": _nullable("string"),
                         "thinking_level": _nullable("string"), "output_format": _nullable("string"),
                         "quality": _nullable("integer", minimum=1, maximum=100)},
                        description="The options the job runs with."),
        "usage": {"anyOf": [_ref("Usage"), {"type": "null"}],
                  "description": "Tokens summed over every provider call (retries and outputs); null when no "
                                 "call reported usage."},
        "cost_usd": _nullable("number", minimum=0, description="Estimated cost from the catalogue's prices "
                                                               "(GET /v1/models); null when unpriced."),
        "cost_is_estimate": {"type": "boolean", "enum": [True], "description": "cost_usd is always an estimate."},
    }


def attempt_fields() -> dict[str, Any]:
    return {"usage": {"anyOf": [_ref("Usage"), {"type": "null"}]}, "cost_usd": _nullable("number", minimum=0)}


def model_schemas() -> dict[str, Any]:
    price = _obj({"input_per_mtok": {"type": "number"}, "output_text_per_mtok": {"type": "number"},
                  "output_image_per_mtok": {"type": "number"},
                  "per_image": {"type": "object", "additionalProperties": {"type": "number"}},
                  "source": {"type": "string"}, "as_of": {"type": "string"}},
                 description="USD per million tokens, or per output image by size; `source` and `as_of` "
                             "say where each price comes from (an estimate says so).")
    strings = {"type": "array", "items": {"type": "string"}}
    model = _obj({"id": {"type": "string"}, "display_name": {"type": "string"}, "image_sizes": strings,
                  "aspect_ratios": strings, "max_reference_images": {"type": "integer", "minimum": 0},
                  "thinking_levels": strings, "price": _ref("ModelPrice"),
                  "shutdown_on": _nullable("string", format="date"), "replacement": _nullable("string"),
                  "retired": {"type": "boolean"}})
    catalogue = _obj({"default": {"type": "string"}, "provider": {"type": "string"}, "source": {"type": "string"},
                      "models": {"type": "array", "items": _ref("Model")}})
    return {"Usage": _usage_schema(), "ModelPrice": price, "Model": model, "ModelCatalogue": catalogue,
            "UsageReport": _usage_totals_schema()}


def _usage_totals_schema() -> dict[str, Any]:
    totals = {"calls": {"type": "integer", "minimum": 0}, "usage": _ref("Usage"),
              "cost_usd": {"type": "number", "minimum": 0}}
    key_row = _obj({"owner": {"type": "string"}, **totals})
    return _obj({"period": {"type": "string", "enum": ["day", "month"]},
                 "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                 "cost_is_estimate": {"type": "boolean", "enum": [True]},
                 "owner": {"type": "string", "description": "The caller (absent in the operator view)."},
                 **totals,
                 "keys": {"type": "array", "items": key_row,
                          "description": "Operator view only (admin token): every key's totals."}},
                required=["period", "from", "to", "cost_is_estimate"],
                description="Provider calls answered, their tokens and estimated cost over UTC days.")


def model_paths() -> dict[str, Any]:
    period = {"name": "period", "in": "query", "required": False,
              "description": "day = today (UTC); month = this month so far.",
              "schema": {"type": "string", "enum": ["day", "month"], "default": "day"}}
    return {
        "/v1/models": {"get": _op(
            "listModels", "meta", "The model catalogue: models, accepted options, prices and lifecycle",
            _responses({200: _json("The catalogue.", _ref("ModelCatalogue"))}, 500), public=True)},
        "/v1/usage": {"get": _op(
            "getUsage", "jobs", "Your provider calls, tokens and estimated cost today or this month",
            _responses({200: _json("Totals (operators with the admin token: per key).", _ref("UsageReport"))},
                       400, 401, 500),
            description="Counted per answered provider call (retries included). Operators who send the admin "
                        "token get every key's totals in `keys`.", parameters=[period])},
    }
