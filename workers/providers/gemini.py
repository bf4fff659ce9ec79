"""The Gemini provider: one `generateContent` call through google-genai, its outcome classified.

Owns the SDK client (built once per provider and reused: it holds the HTTP connection pool), the prompt
format, and the mapping from SDK results and exceptions to `ProviderError` subclasses (`classify_exception`,
`result_from_response`). It never retries, never sleeps and never logs: the generate task decides.

SDK behaviour this relies on (google-genai 3.3.0, read from its source):
- Transport is httpx2 by default (httpx when GOOGLE_GENAI_HTTP_CLIENT=httpx); their exception classes are
  unrelated, so timeouts and connection errors are caught for both.
- `HttpOptions.timeout` is in ms and becomes the httpx per-phase timeout (connect/read/write/pool), not a total
  deadline; the SDK also sends `X-Server-Timeout: ceil(seconds)`. A timeout raises `httpx2.ReadTimeout` etc.
- Retries: none unless `retry_options` is set (then 5 attempts by default, on 408/429/5xx and transport
  errors). We set `HttpRetryOptions(attempts=1)` explicitly so an SDK default change cannot add hidden retries.
- HTTP errors raise `errors.ClientError` (4xx) / `ServerError` (5xx) with `.code`, `.status`, `.message` and
  `.details` = the whole JSON body; a non-JSON body becomes `{"message": <raw text>, "status": <reason>}`.
  `str(exc)` embeds the whole body, so it never goes into our errors.

Prompt sent (same as the seed's createSimplePrompt): one text part, then one inline-data part per input image
in request order. The text is `f"{image_description}\\n\\n{instruction}"` when a description is given, else just
the instruction. For `compose` the instruction is prefixed with "Compose these images: ", for
`style_transfer` with "Apply the style of the second image to the first: " (the images are content, style).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from shared.jobs.options import JobOptions, Usage
from shared.models import normalize_model_name
from workers.providers.base import (
    ContentBlocked,
    EditRequest,
    EditResult,
    EmptyResponse,
    InvalidProviderRequest,
    ModelUnavailable,
    NoImageGenerated,
    OutputImage,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhaustedForDay,
    SpendCapReached,
)

ROLE_HINTS: Mapping[str, str] = {
    "compose": "Compose these images: ",
    "style_transfer": "Apply the style of the second image to the first: ",
}

# finishReason values that mean "refused by policy", as opposed to "tried, made no image" (NO_IMAGE,
# IMAGE_OTHER, OTHER, STOP with text only). Any promptFeedback.blockReason at all means blocked.
BLOCKED_FINISH_REASONS = frozenset({
    "SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT", "BLOCKLIST", "SPII",
    "RECITATION", "IMAGE_RECITATION", "MODEL_ARMOR",
})

MAX_DETAIL_CHARS = 300


# --- prompt ---------------------------------------------------------------------------------------------

def build_prompt(request: EditRequest) -> str:
    instruction = ROLE_HINTS.get(request.operation, "") + request.instruction.strip()
    description = request.image_description.strip()
    return f"{description}\n\n{instruction}" if description else instruction


def build_contents(request: EditRequest) -> types.Content:
    """One user turn: the prompt text, then the images in request order."""
    parts = [types.Part.from_text(text=build_prompt(request))]
    parts.extend(types.Part.from_bytes(data=image.data, mime_type=image.mime_type) for image in request.images)
    return types.Content(role="user", parts=parts)


# --- classification -------------------------------------------------------------------------------------

def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeout classes, other transport classes) of whichever httpx flavours are installed."""
    timeouts: list[type[BaseException]] = [TimeoutError]
    transport: list[type[BaseException]] = [ConnectionError]
    for module_name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transport.append(module.TransportError)
    return tuple(timeouts), tuple(transport)


_TIMEOUT_ERRORS, _TRANSPORT_ERRORS = _transport_errors()

# HTTP status → error class. 400 is refined by `_refine_400`; codes not listed fall back by family.
HTTP_STATUS_ERRORS: Mapping[int, type[ProviderError]] = {
    400: InvalidProviderRequest,
    401: ProviderAuthError,
    403: ProviderAuthError,
    404: ModelUnavailable,
    408: ProviderTimeout,
    429: ProviderRateLimited,
    500: ProviderUnavailable,
    502: ProviderUnavailable,
    503: ProviderUnavailable,
    504: ProviderUnavailable,
}

_KEY_PATTERNS = (
    (re.compile(r"AIza[0-9A-Za-z_\-]{20,}"), "[redacted]"),  # Google API keys
    (re.compile(r"(?i)\b((?:api[_-]?)?key|token|secret|password)(\s*[=:]\s*[\"']?)[^\s&\"',;]+"),
     r"\1\2[redacted]"),  # key=..., "token": "..."
    (re.compile(r"(?i)\bbearer\s+[^\s\"',;]+"), "Bearer [redacted]"),
)


def sanitize(text: str, secrets: Iterable[str] = ()) -> str:
    """One line, no keys (the given secrets and anything shaped like a key), no HTML, ≤ 300 chars."""
    stripped = text.strip()
    if stripped.startswith("<"):
        return f"non-JSON error body ({len(stripped)} chars)"
    for secret in secrets:
        if secret:
            stripped = stripped.replace(secret, "[redacted]")
    for pattern, replacement in _KEY_PATTERNS:
        stripped = pattern.sub(replacement, stripped)
    one_line = " ".join(stripped.split())
    return one_line if len(one_line) <= MAX_DETAIL_CHARS else one_line[: MAX_DETAIL_CHARS - 1] + "…"


def _error_details(body: Any) -> list[Mapping[str, Any]]:
    """The `error.details` list of a google.rpc.Status body (empty when absent or not JSON)."""
    if not isinstance(body, Mapping):
        return []
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, Mapping) else None
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def _detail_of_type(details: list[Mapping[str, Any]], suffix: str) -> Mapping[str, Any] | None:
    return next((d for d in details if str(d.get("@type", "")).endswith(suffix)), None)


def parse_duration_s(text: object) -> float | None:
    """A protobuf JSON Duration ("7s", "1.5s", "0.250s") in seconds; None when absent or malformed."""
    if not isinstance(text, str):
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", text)
    return float(match.group(1)) if match else None


def _retry_after_s(exc: genai_errors.APIError, details: list[Mapping[str, Any]]) -> float | None:
    info = _detail_of_type(details, "google.rpc.RetryInfo")
    delay = parse_duration_s(info.get("retryDelay")) if info else None
    if delay is None and exc.response is not None:
        header = getattr(exc.response, "headers", {}).get("retry-after")
        try:
            delay = float(header) if header is not None else None
        except ValueError:
            delay = None
    return delay


def _is_bad_key(message: str, details: list[Mapping[str, Any]]) -> bool:
    info = _detail_of_type(details, "google.rpc.ErrorInfo")
    reason = str(info.get("reason", "")) if info else ""
    return reason in ("API_KEY_INVALID", "API_KEY_EXPIRED") or "API key not valid" in message


# Words in a QuotaFailure violation's quotaId / quotaMetric that name a spend cap rather than a request quota
# (docs/providers.md#429-kinds: an assumption, Google does not publish the id of its spend caps).
SPEND_CAP_WORDS = ("spend", "billing", "budget")


def _quota_names(details: list[Mapping[str, Any]]) -> list[str]:
    """The lower-cased quotaId and quotaMetric of every QuotaFailure violation."""
    failure = _detail_of_type(details, "google.rpc.QuotaFailure")
    violations = failure.get("violations", []) if failure else []
    if not isinstance(violations, list):
        return []
    return [str(v.get(field, "")).lower() for v in violations if isinstance(v, Mapping)
            for field in ("quotaId", "quotaMetric")]


def quota_kind(details: list[Mapping[str, Any]]) -> str:
    """Which limit a 429 names: "spend_cap", "per_day" or "per_minute" (also when it names none)."""
    names = _quota_names(details)
    if any(word in name for name in names for word in SPEND_CAP_WORDS):
        return "spend_cap"
    if any("perday" in name for name in names):
        return "per_day"
    return "per_minute"


def _is_per_day_quota(details: list[Mapping[str, Any]]) -> bool:
    """QuotaFailure violations name the quota (e.g. GenerateRequestsPerDayPerProjectPerModel)."""
    return quota_kind(details) == "per_day"


def classify_api_error(exc: genai_errors.APIError, secrets: Iterable[str] = ()) -> ProviderError:
    """An SDK HTTP error as our error: class from the status table, details from code + status + message."""
    code = int(exc.code or 0)
    status = str(exc.status or "")
    message = str(exc.message or "")
    details = _error_details(exc.details)
    text = " ".join(p for p in (f"HTTP {code}", status) if p) + f": {sanitize(message, secrets) or '-'}"
    error_class = HTTP_STATUS_ERRORS.get(code)
    if error_class is None:
        error_class = ProviderUnavailable if code >= 500 else InvalidProviderRequest if code >= 400 else None
    if code == 400 and _is_bad_key(message, details):
        error_class = ProviderAuthError
    if error_class is None:
        return ProviderError(text)
    if error_class is ProviderRateLimited:
        kind = quota_kind(details)
        rate_class = {"spend_cap": SpendCapReached, "per_day": QuotaExhaustedForDay}.get(kind, ProviderRateLimited)
        return rate_class(text, retry_after_s=_retry_after_s(exc, details))
    return error_class(text)


def classify_exception(exc: BaseException, *, timeout_s: float, secrets: Iterable[str] = ()) -> ProviderError:
    """Any exception from a generate_content call as a ProviderError (never carrying str(exc))."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        return classify_api_error(exc, secrets)
    if isinstance(exc, _TIMEOUT_ERRORS):
        return ProviderTimeout(f"no response within {timeout_s:g} s ({type(exc).__name__})")
    if isinstance(exc, _TRANSPORT_ERRORS):
        return ProviderUnavailable(f"connection to the Gemini API failed ({type(exc).__name__})")
    if isinstance(exc, genai_errors.UnknownApiResponseError | json.JSONDecodeError):
        return ProviderUnavailable("the Gemini API answered with a body that is not JSON")
    return ProviderError(f"unexpected {type(exc).__name__} from the Gemini SDK")


# --- response -------------------------------------------------------------------------------------------

def _enum_name(value: object) -> str:
    return str(getattr(value, "value", value) or "")


def result_from_response(response: types.GenerateContentResponse) -> EditResult:
    """Images from the first candidate's non-thought inline-data parts, else ContentBlocked / NoImageGenerated
    (an answered call is billed: the error carries the response's usage)."""
    try:
        return _result_from_response(response)
    except ProviderError as exc:
        exc.usage = _usage(response.usage_metadata)
        raise


def _result_from_response(response: types.GenerateContentResponse) -> EditResult:
    feedback = response.prompt_feedback
    block_reason = _enum_name(feedback.block_reason) if feedback is not None else ""
    if block_reason:
        raise ContentBlocked(f"prompt blocked: {block_reason}")
    if not response.candidates:
        raise EmptyResponse("the model returned no candidates")
    candidate = response.candidates[0]
    finish_reason = _enum_name(candidate.finish_reason)
    parts = (candidate.content.parts if candidate.content is not None else None) or []
    # Thinking models (gemini-3-pro-image-preview) also send interim images marked `thought`: not outputs.
    images = tuple(
        OutputImage(data=part.inline_data.data, mime_type=part.inline_data.mime_type or "image/png")
        for part in parts
        if part.inline_data is not None and part.inline_data.data and not part.thought
    )
    texts = [part.text for part in parts if part.text and not part.thought]
    text = "\n".join(texts) or None
    if not images:
        if finish_reason in BLOCKED_FINISH_REASONS:
            raise ContentBlocked(f"generation stopped: finishReason={finish_reason}")
        said = f"; model said: {sanitize(text)}" if text else ""
        raise NoImageGenerated(f"no image in the response (finishReason={finish_reason or 'none'}){said}")
    return EditResult(images=images, text=text, usage=_usage(response.usage_metadata))


def _modality_tokens(details: list[types.ModalityTokenCount] | None, modality: str) -> int:
    return sum(int(d.token_count or 0) for d in details or () if _enum_name(d.modality) == modality)


def _usage(meta: types.GenerateContentResponseUsageMetadata | None) -> Usage | None:
    """usageMetadata as our `Usage` (prompt, image, output and thinking tokens as the API reports them)."""
    if meta is None:
        return None
    return Usage(prompt_tokens=int(meta.prompt_token_count or 0),
                 prompt_image_tokens=_modality_tokens(meta.prompt_tokens_details, "IMAGE"),
                 output_tokens=int(meta.candidates_token_count or 0),
                 output_image_tokens=_modality_tokens(meta.candidates_tokens_details, "IMAGE"),
                 thinking_tokens=int(meta.thoughts_token_count or 0),
                 total_tokens=int(meta.total_token_count or 0))


def build_config(base: types.GenerateContentConfig, options: JobOptions) -> types.GenerateContentConfig:
    """The call's config: `base` plus the job's options as the SDK names them (ImageConfig.aspect_ratio,
    ImageConfig.image_size, ThinkingConfig.thinking_level); unset options are left out, so the model's
    defaults apply."""
    update: dict[str, Any] = {}
    if options.aspect_ratio or options.image_size:
        update["image_config"] = types.ImageConfig(aspect_ratio=options.aspect_ratio or None,
                                                   image_size=options.image_size or None)
    if options.thinking_level:
        update["thinking_config"] = types.ThinkingConfig(
            thinking_level=types.ThinkingLevel(options.thinking_level.upper()))
    return base.model_copy(update=update) if update else base


# --- provider -------------------------------------------------------------------------------------------

class GeminiProvider:
    """`Provider` backed by the Gemini API (or anything speaking its wire format at `base_url`)."""

    name = "gemini"
    cpu_bound = False  # waits on the network: many calls share one generate process (workers/concurrency.py)

    def __init__(self, api_key: str, model: str, timeout_s: float, base_url: str = "") -> None:
        if not api_key:
            raise ValueError("GeminiProvider needs an API key")
        self._api_key = api_key
        self._model = normalize_model_name(model)
        self._timeout_s = timeout_s
        options = types.HttpOptions(
            api_version="v1beta",
            timeout=max(1, int(timeout_s * 1000)),
            base_url=base_url or None,
            retry_options=types.HttpRetryOptions(attempts=1),  # we retry ourselves (generate task)
        )
        # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in the environment must not reroute our calls.
        self._client = genai.Client(api_key=api_key, vertexai=False, http_options=options)
        self._config = types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            # One edit = one HTTP request: no function-calling loop, no continuation follow-ups.
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            automatic_continuation=False,
        )

    def __repr__(self) -> str:
        return f"GeminiProvider(model={self._model!r}, timeout_s={self._timeout_s:g})"

    def edit(self, request: EditRequest) -> EditResult:
        model = normalize_model_name(request.model or self._model)
        try:
            response = self._client.models.generate_content(
                model=model, contents=build_contents(request), config=build_config(self._config, request.options))
        except Exception as exc:
            # `from None`: the SDK exception's text embeds the whole upstream body, and its response object
            # carries our request headers (the key); a chained cause would travel into logs and results.
            raise classify_exception(exc, timeout_s=self._timeout_s, secrets=(self._api_key,)) from None
        return result_from_response(response)

    def close(self) -> None:
        self._client.close()
