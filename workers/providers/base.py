"""The provider interface: one call turns prepared input images + an instruction into output images.

Providers are pluggable (`local`, `gemini`, and test stubs). A provider never retries and never sleeps on its
own; it raises a `ProviderError` subclass that says what happened, and the generate task decides (retry,
fail, wait) from the error classification. Providers must not log or raise API keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from shared.errors import JobError


@dataclass(frozen=True, slots=True)
class InputImage:
    data: bytes
    mime_type: str  # e.g. "image/png", "image/jpeg"


@dataclass(frozen=True, slots=True)
class EditRequest:
    operation: str  # "edit" | "compose" | "style_transfer"
    instruction: str
    images: tuple[InputImage, ...]
    image_description: str = ""
    output_index: int = 0  # which of num_images this call produces (lets a provider vary outputs)
    model: str = ""


@dataclass(frozen=True, slots=True)
class OutputImage:
    data: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class EditResult:
    images: tuple[OutputImage, ...]
    text: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


class ProviderError(JobError):
    """A provider call failed. `retryable` says whether a later attempt may succeed."""

    code = "internal_error"
    retryable = False
    outcome = "error"  # short label for attempts/metrics

    def __init__(self, details: str = "", *, retry_after_s: float | None = None, **kw: object) -> None:
        super().__init__(details, **kw)  # type: ignore[arg-type]
        self.retry_after_hint_s = retry_after_s


class ProviderTimeout(ProviderError):
    code = "upstream_timeout"
    retryable = True
    outcome = "timeout"


class ProviderRateLimited(ProviderError):
    code = "upstream_rate_limited"
    retryable = True
    outcome = "rate_limited"


class ProviderUnavailable(ProviderError):
    code = "upstream_unavailable"
    retryable = True
    outcome = "unavailable"


class ProviderAuthError(ProviderError):
    code = "upstream_auth_error"
    outcome = "auth_error"


class ModelUnavailable(ProviderError):
    code = "model_unavailable"
    outcome = "model_unavailable"


class ContentBlocked(ProviderError):
    code = "content_blocked"
    outcome = "blocked"


class NoImageGenerated(ProviderError):
    code = "no_image_generated"
    outcome = "no_image"


class InvalidProviderRequest(ProviderError):
    """The provider refused the request as malformed (HTTP 400): our bug or an input it cannot take."""

    code = "internal_error"
    outcome = "bad_request"


class Provider(Protocol):
    name: str

    def edit(self, request: EditRequest) -> EditResult:
        """Run one edit; raise a ProviderError subclass on failure."""
        ...
