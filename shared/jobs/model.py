"""The job: states, stages, allowed transitions, and the record as stored and as shown to clients.

The record lives in a Redis hash (see `shared.jobs.store`); this module is pure (no I/O) so the rules can be
read and tested on their own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from shared.clock import rfc3339

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
PARTIALLY_SUCCEEDED = "partially_succeeded"
FAILED = "failed"
CANCELING = "canceling"
CANCELED = "canceled"

STATUSES = (QUEUED, RUNNING, SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, CANCELING, CANCELED)
TERMINAL = frozenset({SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, CANCELED})

STAGES = ("queued", "preprocessing", "waiting_for_quota", "generating", "storing", "done")

OPERATIONS = ("edit", "compose", "style_transfer")

# new status -> statuses it may be entered from. A terminal status is never left (no entry lists one).
TRANSITIONS: dict[str, frozenset[str]] = {
    RUNNING: frozenset({QUEUED}),
    CANCELING: frozenset({RUNNING}),
    CANCELED: frozenset({QUEUED, RUNNING, CANCELING}),
    SUCCEEDED: frozenset({RUNNING}),
    PARTIALLY_SUCCEEDED: frozenset({RUNNING}),
    FAILED: frozenset({QUEUED, RUNNING, CANCELING}),
}

ACTIVE = frozenset({QUEUED, RUNNING, CANCELING})

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def is_valid_job_id(value: str) -> bool:
    """Job ids are 32 lowercase hex chars (uuid4().hex); anything else is rejected before touching Redis."""
    return bool(_JOB_ID.match(value))


@dataclass(frozen=True, slots=True)
class InputMeta:
    index: int
    mime_type: str
    bytes: int
    width: int
    height: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "mime_type": self.mime_type, "bytes": self.bytes,
                "width": self.width, "height": self.height, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputMeta:
        return cls(int(d["index"]), str(d["mime_type"]), int(d["bytes"]), int(d["width"]),
                   int(d["height"]), str(d["sha256"]))


@dataclass(slots=True)
class Job:
    """A job as read from Redis. Times are epoch seconds (float) or None."""

    id: str
    owner: str
    status: str
    stage: str
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
    started_at: float | None = None
    finished_at: float | None = None
    preprocess_started_at: float | None = None
    preprocess_done_at: float | None = None
    generate_done_at: float | None = None
    cancel_requested: bool = False
    billed_calls: int = 0
    text: str | None = None
    error: dict[str, Any] | None = None
    request_hash: str = ""
    cached_from: str = ""
    outputs: dict[int, dict[str, Any]] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    webhook_delivery: dict[str, str] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_hash(self) -> dict[str, str]:
        """The Redis hash fields written at creation (outputs/attempts live in their own keys)."""
        h = {
            "id": self.id, "owner": self.owner, "status": self.status, "stage": self.stage,
            "operation": self.operation, "num_images": str(self.num_images),
            "instruction": self.instruction, "image_description": self.image_description,
            "created_at": repr(self.created_at), "expires_at": repr(self.expires_at),
            "deadline_at": repr(self.deadline_at),
            "inputs": json.dumps([i.to_dict() for i in self.inputs]),
            "webhook_url": self.webhook_url, "provider": self.provider, "model": self.model,
            "request_hash": self.request_hash, "billed_calls": str(self.billed_calls),
            "cached_from": self.cached_from,
            "cancel_requested": "1" if self.cancel_requested else "0",
        }
        return h

    @classmethod
    def from_hash(cls, h: dict[str, str], outputs: dict[str, str] | None = None,
                  attempts: list[str] | None = None) -> Job:
        def f(name: str) -> float | None:
            v = h.get(name, "")
            return float(v) if v else None

        err = h.get("error", "")
        return cls(
            id=h["id"], owner=h.get("owner", ""), status=h["status"], stage=h.get("stage", "queued"),
            operation=h.get("operation", "edit"), num_images=int(h.get("num_images", "1")),
            instruction=h.get("instruction", ""), image_description=h.get("image_description", ""),
            created_at=float(h["created_at"]), expires_at=float(h["expires_at"]),
            deadline_at=float(h.get("deadline_at") or h["expires_at"]),
            inputs=[InputMeta.from_dict(d) for d in json.loads(h.get("inputs") or "[]")],
            webhook_url=h.get("webhook_url", ""), provider=h.get("provider", ""), model=h.get("model", ""),
            started_at=f("started_at"), finished_at=f("finished_at"),
            preprocess_started_at=f("preprocess_started_at"), preprocess_done_at=f("preprocess_done_at"),
            generate_done_at=f("generate_done_at"),
            cancel_requested=h.get("cancel_requested") == "1",
            billed_calls=int(h.get("billed_calls") or 0),
            text=h.get("text") or None,
            error=json.loads(err) if err else None,
            request_hash=h.get("request_hash", ""),
            cached_from=h.get("cached_from", ""),
            outputs={int(k): json.loads(v) for k, v in (outputs or {}).items()},
            attempts=[json.loads(a) for a in (attempts or [])],
        )


def _ms(start: float | None, end: float | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start) * 1000))


def _webhook_view(job: Job) -> dict[str, Any] | None:
    if not job.webhook_url:
        return None
    d = job.webhook_delivery
    return {"url": job.webhook_url, "state": d.get("state", "pending"), "attempts": int(d.get("attempts", 0)),
            "last_status": int(d["last_status"]) if d.get("last_status") else None,
            "last_error": d.get("last_error") or None}


def public_view(job: Job, *, base_url: str = "", queue_position: int | None = None,
                estimated_wait_s: float | None = None) -> dict[str, Any]:
    """The design §4 job object."""
    self_url = f"{base_url}/v1/jobs/{job.id}"
    outputs = []
    output_errors = []
    for index in sorted(job.outputs):
        o = job.outputs[index]
        if o.get("status") == "succeeded":
            outputs.append({"index": index, "url": f"{self_url}/outputs/{index}",
                            "mime_type": o["mime_type"], "width": o["width"], "height": o["height"],
                            "bytes": o["bytes"]})
        elif o.get("error"):
            output_errors.append({"index": index, **o["error"]})
    done = sum(1 for o in job.outputs.values() if o.get("status") in ("succeeded", "failed", "canceled"))
    view: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "operation": job.operation,
        "num_images": job.num_images,
        "created_at": rfc3339(job.created_at),
        "started_at": rfc3339(job.started_at),
        "finished_at": rfc3339(job.finished_at),
        "expires_at": rfc3339(job.expires_at),
        "queue_position": queue_position,
        "estimated_wait_s": estimated_wait_s,
        "stage": job.stage,
        "progress": {"outputs_done": done, "outputs_total": job.num_images},
        "attempts": job.attempts,
        "timings": {
            "queued_ms": _ms(job.created_at, job.started_at),
            "preprocess_ms": _ms(job.preprocess_started_at, job.preprocess_done_at),
            "generate_ms": _ms(job.preprocess_done_at, job.generate_done_at),
            "total_ms": _ms(job.created_at, job.finished_at),
        },
        "outputs": outputs,
        "output_errors": output_errors,
        "text": job.text,
        "error": job.error,
        "provider": job.provider,
        "model": job.model or None,
        "billed_provider_calls": job.billed_calls,
        "cached_from": job.cached_from or None,
        "webhook": _webhook_view(job),
        "links": {"self": self_url, "cancel": self_url},
    }
    return view
