"""The job: its statuses and stages, the allowed transitions, and the typed records it is made of.

Pure (no I/O): the rules can be read and tested on their own. The record lives in Redis and only
`shared.jobs.store.JobStore` reads or writes it; everything else receives the frozen records defined here
(`Job`, `OutputResult`, `JobError`, `Attempt`, `WebhookDelivery`, `WebhookAttempt`, `PreparedInput`) and the
`JobStatus` / `JobStage` enums, never raw hashes or bare strings. The public JSON of a job is `shared.jobs.view`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

# The inputs are part of the job record: re-exported here.
from shared.jobs.inputs import InputMeta as InputMeta
from shared.jobs.inputs import ParentRef as ParentRef
from shared.jobs.inputs import PreparedInput as PreparedInput
from shared.jobs.options import JobOptions, Usage


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    FAILED = "failed"
    CANCELING = "canceling"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


class JobStage(StrEnum):
    QUEUED = "queued"
    PREPROCESSING = "preprocessing"
    WAITING_FOR_QUOTA = "waiting_for_quota"
    GENERATING = "generating"
    STORING = "storing"
    DONE = "done"


class OutputStatus(StrEnum):
    """How one requested output ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class WebhookState(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (WebhookState.DELIVERED, WebhookState.FAILED)


# An attempt's outcome when the provider answered with a result; failures use the error table's outcome names.
ATTEMPT_SUCCEEDED = "succeeded"

STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)
STAGES: tuple[JobStage, ...] = tuple(JobStage)
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.PARTIALLY_SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELING})
OPERATIONS = ("edit", "compose", "style_transfer")

# new status -> statuses it may be entered from. A terminal status is never left (no entry lists one).
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.RUNNING: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELING: frozenset({JobStatus.RUNNING}),
    JobStatus.CANCELED: frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELING}),
    JobStatus.SUCCEEDED: frozenset({JobStatus.RUNNING}),
    JobStatus.PARTIALLY_SUCCEEDED: frozenset({JobStatus.RUNNING}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELING}),
}

# Backwards-compatible module constants (the enum members are the same strings).
QUEUED, RUNNING, SUCCEEDED = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED
PARTIALLY_SUCCEEDED, FAILED = JobStatus.PARTIALLY_SUCCEEDED, JobStatus.FAILED
CANCELING, CANCELED = JobStatus.CANCELING, JobStatus.CANCELED

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def is_valid_job_id(value: str) -> bool:
    """Job ids are 32 lowercase hex chars (uuid4().hex); anything else is rejected before touching Redis."""
    return bool(_JOB_ID.match(value))


class _ReadsLikeJson:
    """Records also read like the JSON they are stored as (`record["code"]`), for views and callers that treat
    them as the wire shape. Unknown names raise KeyError, as a dict would."""

    __slots__ = ()

    def __getitem__(self, name: str) -> Any:
        if name not in {f.name for f in fields(self)}:  # type: ignore[arg-type]
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


@dataclass(frozen=True, slots=True)
class JobError(_ReadsLikeJson):
    """An error as stored on a job (`job.error`) or on one output: the public error body minus the request."""

    code: str
    message: str
    details: str = ""
    suggestion: str = ""
    status_code: int = 500

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details,
                "suggestion": self.suggestion, "status_code": self.status_code}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobError:
        return cls(code=str(d.get("code") or "internal_error"), message=str(d.get("message") or ""),
                   details=str(d.get("details") or ""), suggestion=str(d.get("suggestion") or ""),
                   status_code=int(d.get("status_code") or 500))


@dataclass(frozen=True, slots=True)
class OutputResult(_ReadsLikeJson):
    """How output n ended; written once (first write wins)."""

    status: OutputStatus
    mime_type: str = ""
    width: int = 0
    height: int = 0
    bytes: int = 0
    sha256: str = ""
    error: JobError | None = None
    billed: bool = False  # canceled after a provider call that was billed

    @classmethod
    def succeeded(cls, *, mime_type: str, width: int, height: int, size: int, sha256: str) -> OutputResult:
        return cls(OutputStatus.SUCCEEDED, mime_type=mime_type, width=width, height=height, bytes=size,
                   sha256=sha256)

    @classmethod
    def failed(cls, error: JobError) -> OutputResult:
        return cls(OutputStatus.FAILED, error=error)

    @classmethod
    def canceled(cls, *, billed: bool = False) -> OutputResult:
        return cls(OutputStatus.CANCELED, billed=billed)

    def to_dict(self) -> dict[str, Any]:
        if self.status == OutputStatus.SUCCEEDED:
            return {"status": self.status.value, "mime_type": self.mime_type, "width": self.width,
                    "height": self.height, "bytes": self.bytes, "sha256": self.sha256}
        d: dict[str, Any] = {"status": self.status.value}
        if self.error is not None:
            d["error"] = self.error.to_dict()
        if self.billed:
            d["billed"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutputResult:
        err = d.get("error")
        return cls(OutputStatus(d.get("status") or OutputStatus.FAILED), mime_type=str(d.get("mime_type") or ""),
                   width=int(d.get("width") or 0), height=int(d.get("height") or 0),
                   bytes=int(d.get("bytes") or 0), sha256=str(d.get("sha256") or ""),
                   error=JobError.from_dict(err) if isinstance(err, dict) else None, billed=bool(d.get("billed")))


@dataclass(frozen=True, slots=True)
class Attempt(_ReadsLikeJson):
    """One provider call for one output."""

    output: int
    n: int  # attempt number (retries count up; waits for quota do not)
    outcome: str  # ATTEMPT_SUCCEEDED or an error-table outcome
    at: str | None  # RFC 3339
    duration_ms: int
    error_code: str | None = None
    usage: Usage | None = None  # tokens the provider reported for this call (None: no answer, or none reported)
    cost_usd: float | None = None  # estimated from the catalogue's prices at call time (None: unpriced)

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "n": self.n, "outcome": self.outcome, "at": self.at,
                "duration_ms": self.duration_ms, "error_code": self.error_code,
                "usage": self.usage.to_dict() if self.usage is not None else None, "cost_usd": self.cost_usd}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attempt:
        return cls(output=int(d.get("output") or 0), n=int(d.get("n") or 1), outcome=str(d.get("outcome") or ""),
                   at=d.get("at"), duration_ms=int(d.get("duration_ms") or 0), error_code=d.get("error_code"),
                   usage=Usage.from_dict(d["usage"]) if isinstance(d.get("usage"), dict) else None,
                   cost_usd=float(d["cost_usd"]) if d.get("cost_usd") is not None else None)


@dataclass(frozen=True, slots=True)
class WebhookDelivery(_ReadsLikeJson):
    """Where a job's webhook delivery stands: its outbox entry (shared/jobs/outbox.py), created by the terminal
    write itself and kept beside the record (which never changes once terminal)."""

    state: WebhookState = WebhookState.PENDING
    attempts: int = 0  # attempts started (claimed); the log holds the ones that ended
    last_status: int | None = None
    last_error: str = ""
    last_at: float | None = None
    webhook_id: str = ""  # msg_{job_id}_{status}: stable across attempts and redeliveries
    next_attempt_at: float | None = None  # None once delivered or given up
    first_attempt_at: float | None = None  # the retry window starts here (a redelivery starts a new one)

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> WebhookDelivery:
        def f(name: str) -> float | None:
            return float(h[name]) if h.get(name) else None

        return cls(state=WebhookState(h.get("state") or WebhookState.PENDING),
                   attempts=int(h.get("attempts") or 0),
                   last_status=int(h["last_status"]) if h.get("last_status") else None,
                   last_error=h.get("last_error") or "", last_at=f("last_at"),
                   webhook_id=h.get("webhook_id") or "", next_attempt_at=f("next_at"), first_attempt_at=f("first_at"))


@dataclass(frozen=True, slots=True)
class WebhookAttempt(_ReadsLikeJson):
    """One webhook delivery attempt, as kept in the job's attempt log (GET /v1/jobs/{id}/webhooks)."""

    n: int  # attempt number, from 1 (redeliveries keep counting)
    at: str | None  # RFC 3339: when it started
    http_status: int | None  # None when there was no HTTP answer
    duration_ms: int
    error: str = ""  # "" on an HTTP answer; else timeout, connection_error, tls_error, protocol_error, refused ...
    state: WebhookState = WebhookState.RETRYING  # the delivery's state after this attempt

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "at": self.at, "http_status": self.http_status, "duration_ms": self.duration_ms,
                "error": self.error or None, "state": self.state.value}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WebhookAttempt:
        status = d.get("http_status")
        return cls(n=int(d.get("n") or 0), at=d.get("at"), http_status=int(status) if status is not None else None,
                   duration_ms=int(d.get("duration_ms") or 0), error=str(d.get("error") or ""),
                   state=WebhookState(d.get("state") or WebhookState.RETRYING))


# Written even when empty: the fields scripts and readers expect on every record.
_ALWAYS_WRITTEN = frozenset({"id", "owner", "status", "stage", "operation", "num_images", "instruction",
                             "created_at", "expires_at", "deadline_at"})


@dataclass(slots=True)
class Job:
    """A job as read from Redis. Times are epoch seconds (float) or None."""

    id: str
    owner: str
    status: JobStatus
    stage: JobStage
    operation: str
    num_images: int
    instruction: str
    image_description: str
    created_at: float
    expires_at: float
    deadline_at: float
    inputs: list[InputMeta] = field(default_factory=list)
    webhook_url: str = ""
    provider: str = ""
    model: str = ""
    model_requested: str = ""  # the model the client named ("" = the default); differs from `model` if retired
    options: JobOptions = field(default_factory=JobOptions)
    started_at: float | None = None
    finished_at: float | None = None
    preprocess_started_at: float | None = None
    preprocess_done_at: float | None = None
    generate_done_at: float | None = None
    cancel_requested: bool = False
    billed_calls: int = 0
    text: str | None = None
    error: JobError | None = None
    request_hash: str = ""
    cached_from: str = ""
    outputs: dict[int, OutputResult] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    webhook_delivery: WebhookDelivery | None = None
    parents: list[ParentRef] = field(default_factory=list)  # inputs taken from earlier outputs, in input order
    waiting_reason: str = ""  # why stage waiting_for_quota (a limiter refusal reason or circuit_open); store-set
    waiting_until: float | None = None  # when that wait is expected to end (e.g. a per-day quota's reset)

    def __post_init__(self) -> None:
        self.status = JobStatus(self.status)  # callers may pass the plain string
        self.stage = JobStage(self.stage)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def canceling(self) -> bool:
        return self.cancel_requested or self.status == JobStatus.CANCELING

    def outputs_with(self, status: OutputStatus) -> list[OutputResult]:
        return [o for o in self.outputs.values() if o.status == status]

    def to_hash(self) -> dict[str, str]:
        """The Redis hash fields written at creation (outputs/attempts live in their own keys). Fields at their
        default (empty text, no parents, no options, 0) are left out: `from_hash` reads them back as defaults,
        and every waiting job costs Redis memory (docs/operations.md, "Redis": ~2 KB per waiting job)."""
        fields = {
            "id": self.id, "owner": self.owner, "status": str(self.status), "stage": str(self.stage),
            "operation": self.operation, "num_images": str(self.num_images),
            "instruction": self.instruction, "image_description": self.image_description,
            "created_at": repr(self.created_at), "expires_at": repr(self.expires_at),
            "deadline_at": repr(self.deadline_at),
            "inputs": json.dumps([i.to_dict() for i in self.inputs]),
            "webhook_url": self.webhook_url, "provider": self.provider, "model": self.model,
            "model_requested": self.model_requested, "options": json.dumps(self.options.to_dict()),
            "request_hash": self.request_hash, "billed_calls": str(self.billed_calls),
            "cached_from": self.cached_from,
            "cancel_requested": "1" if self.cancel_requested else "0",
            "parents": json.dumps([p.to_dict() for p in self.parents]),
        }
        defaults = ("", "[]", "{}", "0")
        return {k: v for k, v in fields.items() if v not in defaults or k in _ALWAYS_WRITTEN}

    @classmethod
    def from_hash(cls, h: dict[str, str], outputs: dict[str, str] | None = None,
                  attempts: list[str] | None = None, webhook: dict[str, str] | None = None) -> Job:
        def f(name: str) -> float | None:
            v = h.get(name, "")
            return float(v) if v else None

        err = h.get("error", "")
        return cls(
            id=h["id"], owner=h.get("owner", ""), status=JobStatus(h["status"]),
            stage=JobStage(h.get("stage") or JobStage.QUEUED),
            operation=h.get("operation", "edit"), num_images=int(h.get("num_images", "1")),
            instruction=h.get("instruction", ""), image_description=h.get("image_description", ""),
            created_at=float(h["created_at"]), expires_at=float(h["expires_at"]),
            deadline_at=float(h.get("deadline_at") or h["expires_at"]),
            inputs=[InputMeta.from_dict(d) for d in json.loads(h.get("inputs") or "[]")],
            webhook_url=h.get("webhook_url", ""), provider=h.get("provider", ""), model=h.get("model", ""),
            model_requested=h.get("model_requested", ""),
            options=JobOptions.from_dict(json.loads(h.get("options") or "{}")),
            started_at=f("started_at"), finished_at=f("finished_at"),
            preprocess_started_at=f("preprocess_started_at"), preprocess_done_at=f("preprocess_done_at"),
            generate_done_at=f("generate_done_at"),
            cancel_requested=h.get("cancel_requested") == "1",
            billed_calls=int(h.get("billed_calls") or 0),
            text=h.get("text") or None,
            error=JobError.from_dict(json.loads(err)) if err else None,
            request_hash=h.get("request_hash", ""),
            cached_from=h.get("cached_from", ""),
            outputs={int(k): OutputResult.from_dict(json.loads(v)) for k, v in (outputs or {}).items()},
            attempts=[Attempt.from_dict(json.loads(a)) for a in (attempts or [])],
            webhook_delivery=WebhookDelivery.from_hash(webhook) if webhook else None,
            parents=[ParentRef.from_dict(d) for d in json.loads(h.get("parents") or "[]")],
            waiting_reason=h.get("waiting_reason", ""), waiting_until=f("waiting_until"),
        )
