"""The provider interface: one call turns prepared input images + an instruction into output images.

Providers are pluggable (`local`, `gemini`, and test stubs). A provider never retries and never sleeps on its
own; it raises a `ProviderError` subclass that says what happened, and the generate task decides (retry,
fail, wait) from the error classification. Providers must not log or raise API keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from shared.errors import JobFailure
from shared.jobs.options import JobOptions, Usage


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
    options: JobOptions = field(default_factory=JobOptions)  # checked against the catalogue at intake


@dataclass(frozen=True, slots=True)
class OutputImage:
    data: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class EditResult:
    images: tuple[OutputImage, ...]
    text: str | None = None
    usage: Usage | None = None  # tokens as the provider reported them (None: not reported)


class Retry(StrEnum):
    NEVER = "never"  # retrying cannot help (bad request, auth, safety, per-day quota)
    BACKOFF = "backoff"  # transient: exponential backoff with full jitter, up to NANOEDIT_MAX_RETRIES
    ONCE = "once"  # probably not transient, but cheap to try one more time (empty answers)


@dataclass(frozen=True, slots=True)
class Rule:
    """How the service treats one provider outcome. The job error code's HTTP status and suggestion come
    from `shared.errors` (one place for public wording)."""

    outcome: str  # label in job.attempts and metrics
    code: str  # job.error code (docs/api.md#errors)
    retry: Retry
    transient: bool  # counts as a provider failure for the circuit breaker
    fleet_cooldown: bool = False  # pause the whole fleet (429: our quota, not this request)
    model_hold: bool = False  # hold this model's calls until its per-day quota resets (midnight Pacific)
    note: str = ""
    billed: bool = False  # the provider answered 200 (tokens were spent) even though we got no image


class ProviderError(JobFailure):
    """A provider call failed; what to do about it is `rule` (looked up in ERROR_TABLE below)."""

    def __init__(self, details: str = "", *, retry_after_s: float | None = None, **kw: object) -> None:
        super().__init__(details, **kw)  # type: ignore[arg-type]
        self.retry_after_hint_s = retry_after_s
        self.usage: Usage | None = None  # tokens of an answered call that still failed (no image, blocked)

    @property
    def rule(self) -> Rule:
        return rule_for(type(self))

    @property
    def retryable(self) -> bool:
        return self.rule.retry is not Retry.NEVER

    @property
    def outcome(self) -> str:
        return self.rule.outcome


class ProviderTimeout(ProviderError):
    code = "upstream_timeout"


class ProviderRateLimited(ProviderError):
    code = "upstream_rate_limited"


class QuotaExhaustedForDay(ProviderRateLimited):
    """429 whose QuotaFailure names a per-day quota: nothing to gain before it resets."""


class SpendCapReached(ProviderRateLimited):
    """429 whose QuotaFailure names a spend cap (docs/providers.md#429-kinds): pause for its window."""


class ProviderUnavailable(ProviderError):
    code = "upstream_unavailable"


class ProviderAuthError(ProviderError):
    code = "upstream_auth_error"


class ModelUnavailable(ProviderError):
    code = "model_unavailable"


class ContentBlocked(ProviderError):
    code = "content_blocked"


class NoImageGenerated(ProviderError):
    code = "no_image_generated"


class EmptyResponse(NoImageGenerated):
    """No candidates at all (and no block reason): usually a hiccup, worth exactly one more try."""


class InvalidProviderRequest(ProviderError):
    """The provider refused the request as malformed (HTTP 400): our bug or an input it cannot take."""

    code = "internal_error"


# The error table: every provider outcome, in one place. Most specific class first.
ERROR_TABLE: tuple[tuple[type[ProviderError], Rule], ...] = (
    (QuotaExhaustedForDay, Rule("quota_exhausted_day", "upstream_rate_limited", Retry.NEVER, transient=False,
                                model_hold=True,
                                note="429 on a per-day quota: the model is held until midnight Pacific")),
    (SpendCapReached, Rule("spend_cap", "upstream_rate_limited", Retry.BACKOFF, transient=False,
                           fleet_cooldown=True, note="429 on a spend cap: the fleet pauses for its window")),
    (ProviderRateLimited, Rule("rate_limited", "upstream_rate_limited", Retry.BACKOFF, transient=False,
                               fleet_cooldown=True, note="429: retried no sooner than RetryInfo.retryDelay")),
    (ProviderTimeout, Rule("timeout", "upstream_timeout", Retry.BACKOFF, transient=True,
                           note="no answer within NANOEDIT_GEMINI_TIMEOUT_S, or HTTP 408")),
    (ProviderUnavailable, Rule("unavailable", "upstream_unavailable", Retry.BACKOFF, transient=True,
                               note="HTTP 500/502/503/504, connection errors, non-JSON answers")),
    (ProviderAuthError, Rule("auth_error", "upstream_auth_error", Retry.NEVER, transient=False,
                             note="HTTP 401/403, or 400 API_KEY_INVALID")),
    (ModelUnavailable, Rule("model_unavailable", "model_unavailable", Retry.NEVER, transient=False,
                            note="HTTP 404: unknown model")),
    (ContentBlocked, Rule("blocked", "content_blocked", Retry.NEVER, transient=False,
                          note="promptFeedback.blockReason or a safety finishReason", billed=True)),
    (EmptyResponse, Rule("empty", "no_image_generated", Retry.ONCE, transient=False,
                         note="no candidates: retried once", billed=True)),
    (NoImageGenerated, Rule("no_image", "no_image_generated", Retry.NEVER, transient=False,
                            note="answered with text only / finishReason NO_IMAGE", billed=True)),
    (InvalidProviderRequest, Rule("bad_request", "internal_error", Retry.NEVER, transient=False,
                                  note="HTTP 400 other than a bad key: a bug on our side")),
    (ProviderError, Rule("error", "internal_error", Retry.NEVER, transient=False,
                         note="anything unexpected from the SDK")),
)


def rule_for(cls: type[ProviderError]) -> Rule:
    for klass, rule in ERROR_TABLE:
        if issubclass(cls, klass):
            return rule
    raise LookupError(cls)  # unreachable: ProviderError is the last row


class Provider(Protocol):
    name: str
    # True when `edit` is CPU work in this process (the local provider), not a wait on the network: the generate
    # pool then runs it on a native thread instead of its event loop (workers/concurrency.py).
    cpu_bound: bool

    def edit(self, request: EditRequest) -> EditResult:
        """Run one edit; raise a ProviderError subclass on failure."""
        ...
