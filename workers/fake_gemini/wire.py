"""The Gemini REST wire format as the fake speaks it: request decoding and real-shaped response bodies.

Requests: the google-genai SDK (3.3.0) sends mixed casing (`inlineData` with a snake_case `mime_type` inside,
`generationConfig.responseModalities`) and URL-safe base64; the REST docs show camelCase and standard base64.
We accept every combination. Responses are always camelCase with standard base64, as the real API answers.

Errors follow the `google.rpc.Status` JSON shape the real API returns:
`{"error": {"code", "message", "status", "details": [{"@type": ...}, ...]}}`. Messages are copied from the
real service so code that pattern-matches them (e.g. "API key not valid") behaves the same against the fake.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = "application/json; charset=UTF-8"
RPC_TYPE = "type.googleapis.com/google.rpc."


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class InlineImage:
    mime_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """What a generateContent body asked for, decoded."""

    prompt: str
    images: tuple[InlineImage, ...] = ()
    response_modalities: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)
    aspect_ratio: str = ""  # generationConfig.imageConfig.aspectRatio
    image_size: str = ""  # generationConfig.imageConfig.imageSize
    thinking_level: str = ""  # generationConfig.thinkingConfig.thinkingLevel (the SDK sends e.g. "HIGH")
    generation_config: Mapping[str, Any] = field(default_factory=dict)


class WireError(ValueError):
    """The request body is not a valid generateContent request; carries the real-shaped 400 reply."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reply = api_error(400, "INVALID_ARGUMENT", message)


def json_reply(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Reply:
    return Reply(status, json.dumps(payload).encode(), JSON_TYPE, tuple(headers))


# --- errors ---------------------------------------------------------------------------------------------

def api_error(code: int, status: str, message: str, details: Iterable[Mapping[str, Any]] = (),
              headers: Iterable[tuple[str, str]] = ()) -> Reply:
    """A `google.rpc.Status`-shaped error reply."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    detail_list = [dict(d) for d in details]
    if detail_list:
        error["details"] = detail_list
    return json_reply(code, {"error": error}, headers)


def retry_info(delay_s: float) -> dict[str, Any]:
    text = f"{int(delay_s)}s" if float(delay_s).is_integer() else f"{delay_s:.3f}".rstrip("0") + "s"
    return {"@type": RPC_TYPE + "RetryInfo", "retryDelay": text}


# The spend cap's QuotaFailure names (docs/providers.md#429-kinds): Google does not publish them, so the fake
# uses names that carry the words the provider looks for ("spend", "billing").
SPEND_CAP_QUOTA_ID = "GenerateContentSpendCapPerBillingAccount"
SPEND_CAP_QUOTA_METRIC = "generativelanguage.googleapis.com/billing_spend"


def rate_limited(model: str, *, retry_after_s: float, limit: int, per: str = "Minute",
                 quota_id: str = "", quota_metric: str = "") -> Reply:
    """429 as the real API sends it for a per-minute (or per-day, or spend-cap) quota: Help, QuotaFailure,
    RetryInfo."""
    violation = {
        "quotaMetric": quota_metric or "generativelanguage.googleapis.com/generate_content_requests",
        "quotaId": quota_id or f"GenerateRequestsPer{per}PerProjectPerModel",
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": str(limit),
    }
    details = [
        {"@type": RPC_TYPE + "Help",
         "links": [{"description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
        {"@type": RPC_TYPE + "QuotaFailure", "violations": [violation]},
        retry_info(retry_after_s),
    ]
    message = ("You exceeded your current quota, please check your plan and billing details. For more "
               "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.")
    return api_error(429, "RESOURCE_EXHAUSTED", message, details)


def overloaded() -> Reply:
    return api_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


def internal() -> Reply:
    return api_error(500, "INTERNAL", "An internal error has occurred. Please retry or report in "
                     "https://developers.generativeai.google/guide/troubleshooting")


def deadline_exceeded() -> Reply:
    return api_error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")


def missing_key() -> Reply:
    """What generativelanguage.googleapis.com answers when no key (and no OAuth identity) is sent."""
    return api_error(403, "PERMISSION_DENIED",
                     "Method doesn't allow unregistered callers (callers without established identity). "
                     "Please use API Key or other form of API consumer identity to call this API.")


def invalid_key() -> Reply:
    """A present but wrong key: 400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID (not 401)."""
    message = "API key not valid. Please pass a valid API key."
    details: list[dict[str, Any]] = [
        {"@type": RPC_TYPE + "ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
         "metadata": {"service": "generativelanguage.googleapis.com"}},
        {"@type": RPC_TYPE + "LocalizedMessage", "locale": "en-US", "message": message},
    ]
    return api_error(400, "INVALID_ARGUMENT", message, details)


def model_not_found(model: str, api_version: str) -> Reply:
    return api_error(404, "NOT_FOUND",
                     f"models/{model} is not found for API version {api_version}, or is not supported for "
                     "generateContent. Call ListModels to see the list of available models and their "
                     "supported methods.")


def bad_gateway() -> Reply:
    """A proxy in front of the API failing: HTML, not JSON (clients must not assume a JSON error body)."""
    html = (b"<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 502 (Server Error)!!1</title>"
            b"<p><b>502.</b> <ins>That\xe2\x80\x99s an error.</ins><p>The server encountered a temporary error "
            b"and could not complete your request.<p>Please try again in 30 seconds.</html>\n")
    return Reply(502, html, "text/html; charset=UTF-8")


def route_not_found(path: str) -> Reply:
    return api_error(404, "NOT_FOUND", f"No route for {path[:200]}.")


# --- success --------------------------------------------------------------------------------------------

def image_part(data: bytes, mime_type: str = "image/png") -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime_type, "data": base64.b64encode(data).decode("ascii")}}


def text_part(text: str) -> dict[str, Any]:
    return {"text": text}


def usage(prompt_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens}


def candidate_reply(parts: list[dict[str, Any]] | None, finish_reason: str, *, model: str,
                    usage_metadata: Mapping[str, Any]) -> Reply:
    """200 with one candidate; `parts=None` means a candidate without content (as safety stops send)."""
    candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
    if parts is not None:
        candidate["content"] = {"role": "model", "parts": parts}
    return json_reply(200, {"candidates": [candidate], "usageMetadata": dict(usage_metadata),
                            "modelVersion": model, "responseId": "fake-response"})


# --- request decoding -----------------------------------------------------------------------------------

def _pick(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    return obj[camel] if camel in obj else obj.get(snake)


def decode_b64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not."""
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


def parse_generate_request(body: bytes) -> GenerateRequest:
    """Decode a generateContent body; raise `WireError` (→ 400 INVALID_ARGUMENT) when it is malformed."""
    try:
        payload = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WireError("Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(payload, dict):
        raise WireError("Invalid JSON payload received. Expected an object.")
    contents = payload.get("contents")
    if not isinstance(contents, list) or not contents:
        raise WireError("* GenerateContentRequest.contents: contents is not specified")
    texts: list[str] = []
    images: list[InlineImage] = []
    for ci, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            raise WireError(f"* GenerateContentRequest.contents[{ci}].parts: contents.parts must not be empty")
        for pi, part in enumerate(parts):
            if not isinstance(part, dict):
                raise WireError(f"Invalid value at 'contents[{ci}].parts[{pi}]': expected an object")
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            blob = _pick(part, "inlineData", "inline_data")
            if isinstance(blob, dict):
                images.append(_decode_blob(blob, f"contents[{ci}].parts[{pi}].inline_data"))
    gen_config = _pick(payload, "generationConfig", "generation_config") or {}
    if not isinstance(gen_config, dict):
        raise WireError("Invalid value at 'generation_config': expected an object")
    modalities = _pick(gen_config, "responseModalities", "response_modalities") or []
    image_config = _pick(gen_config, "imageConfig", "image_config") or {}
    thinking_config = _pick(gen_config, "thinkingConfig", "thinking_config") or {}
    if not isinstance(image_config, dict) or not isinstance(thinking_config, dict):
        raise WireError("Invalid value at 'generation_config': imageConfig/thinkingConfig must be objects")
    return GenerateRequest(prompt="\n".join(texts), images=tuple(images),
                           response_modalities=tuple(str(m) for m in modalities), raw=payload,
                           aspect_ratio=str(_pick(image_config, "aspectRatio", "aspect_ratio") or ""),
                           image_size=str(_pick(image_config, "imageSize", "image_size") or ""),
                           thinking_level=str(_pick(thinking_config, "thinkingLevel", "thinking_level") or ""),
                           generation_config=gen_config)


def _decode_blob(blob: Mapping[str, Any], where: str) -> InlineImage:
    mime_type = _pick(blob, "mimeType", "mime_type")
    data = blob.get("data")
    if not isinstance(mime_type, str) or not mime_type:
        raise WireError(f"* GenerateContentRequest.{where}.mime_type: mime_type is not specified")
    if not isinstance(data, str):
        raise WireError(f"* GenerateContentRequest.{where}.data: data is not specified")
    try:
        return InlineImage(mime_type, decode_b64(data))
    except (binascii.Error, ValueError):
        raise WireError(f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed") from None
