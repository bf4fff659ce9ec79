"""Routes under /v1/jobs: submit, read, download outputs, cancel, list."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import caller
from api.intake import Submission, parse_submission
from api.services import Services, services
from shared.blobs import input_key, job_prefix, output_key
from shared.errors import ClientInputError, Conflict, NanoeditError, NotFound
from shared.jobs.model import STATUSES, InputMeta, Job, is_valid_job_id, public_view

log = logging.getLogger("nanoedit.api.jobs")
bp = Blueprint("jobs", __name__)


def _view(svc: Services, job: Job) -> dict[str, Any]:
    position = None if job.terminal else svc.store.queue_position(job.id)
    return public_view(job, base_url=svc.settings.public_base_url, queue_position=position,
                       estimated_wait_s=svc.store.estimated_wait_s(position))


def _owned_job(svc: Services, job_id: str) -> Job:
    """The caller's job or 404 (another owner's job is reported as unknown, not forbidden: no id probing)."""
    owner = caller(svc.settings, request)
    if not is_valid_job_id(job_id):
        raise NotFound(f"{job_id[:40]!r} is not a job id", suggestion="Job ids are 32 hex characters, "
                                                                       "as returned by POST /v1/jobs.")
    job = svc.store.get(job_id)
    if job is None or (svc.settings.auth_enabled and job.owner != owner):
        raise NotFound(f"no job {job_id}", suggestion="Check the id; jobs are visible only to the key that "
                                                      "created them.")
    return job


@bp.post("/v1/jobs")
def submit() -> tuple[Response, int, dict[str, str]]:
    svc = services()
    owner = caller(svc.settings, request)
    sub = parse_submission(request, svc.settings)
    job = _create(svc, owner, sub)
    body = _view(svc, job)
    return jsonify(body), 202, {"Location": f"/v1/jobs/{job.id}"}


def _create(svc: Services, owner: str, sub: Submission) -> Job:
    now = svc.clock.now()
    job_id = uuid.uuid4().hex
    inputs = []
    for i, img in enumerate(sub.images):
        svc.blobs.put(input_key(job_id, i), img.data)
        inputs.append(InputMeta(index=i, mime_type=img.info.mime_type, bytes=len(img.data),
                                width=img.info.width, height=img.info.height, sha256=img.sha256))
    s = svc.settings
    job = Job(id=job_id, owner=owner, status="queued", stage="queued", operation=sub.operation,
              num_images=sub.num_images, instruction=sub.instruction, image_description=sub.image_description,
              created_at=now, expires_at=now + s.job_ttl_s, deadline_at=now + s.job_deadline_s, inputs=inputs,
              webhook_url=sub.webhook_url, provider=s.provider,
              model=s.gemini_model if s.provider == "gemini" else "local",
              request_hash=sub.request_hash(s.gemini_model if s.provider == "gemini" else "local"))
    try:
        svc.store.create(job)
    except Exception:
        svc.blobs.delete_prefix(job_prefix(job_id))
        raise NanoeditError("could not write the job record", code="service_unavailable") from None
    try:
        svc.enqueuer.preprocess(job_id)
    except Exception:
        log.exception("enqueue failed", extra={"job_id": job_id})
        svc.store.finish(job_id, "failed", error={"code": "internal_error", "message": "Could not enqueue.",
                                                  "details": "the queue was unreachable at submission",
                                                  "suggestion": "Submit the job again."})
        raise NanoeditError("the job could not be enqueued", code="service_unavailable") from None
    log.info("job accepted", extra={"job_id": job_id, "operation": sub.operation, "images": len(inputs),
                                    "num_images": sub.num_images})
    return job


@bp.get("/v1/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    svc = services()
    return jsonify(_view(svc, _owned_job(svc, job_id)))


@bp.get("/v1/jobs/<job_id>/outputs/<n>")
def get_output(job_id: str, n: str) -> Response:
    svc = services()
    job = _owned_job(svc, job_id)
    if not re.fullmatch(r"[0-9]{1,3}", n) or int(n) >= job.num_images:
        raise NotFound(f"output {n[:10]!r} does not exist; this job has {job.num_images} output(s)",
                       suggestion=f"Use an index from 0 to {job.num_images - 1}.")
    index = int(n)
    meta = job.outputs.get(index)
    if not meta or meta.get("status") != "succeeded":
        state = meta.get("status") if meta else "not produced yet"
        raise Conflict(f"output {index} is {state}", suggestion="Poll GET /v1/jobs/{id} until the job "
                                                                "has finished; failed outputs have no image.")
    etag = meta.get("sha256") or hashlib.sha256(str(meta).encode()).hexdigest()
    if request.if_none_match.contains(etag):
        return Response(status=304, headers={"ETag": f'"{etag}"'})
    data = svc.blobs.get(output_key(job_id, index))
    ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(meta["mime_type"], "bin")
    return Response(data, mimetype=meta["mime_type"], headers={
        "ETag": f'"{etag}"', "Cache-Control": "private, max-age=3600",
        "Content-Disposition": f'inline; filename="{job_id}-{index}.{ext}"'})


@bp.delete("/v1/jobs/<job_id>")
def cancel(job_id: str) -> tuple[Response, int]:
    svc = services()
    job = _owned_job(svc, job_id)
    if job.terminal:
        raise Conflict(f"job {job_id} already {job.status}",
                       suggestion="A finished job cannot be canceled; GET it to read the result.")
    result = svc.store.request_cancel(job_id)
    if not result.ok:
        raise Conflict(f"job {job_id} finished before the cancel ({result.previous})",
                       suggestion="GET the job to read its result.")
    fresh = svc.store.get(job_id)
    assert fresh is not None
    return jsonify(_view(svc, fresh)), 202


@bp.get("/v1/jobs")
def list_jobs() -> Response:
    svc = services()
    owner = caller(svc.settings, request)
    status = request.args.get("status", "").strip() or None
    if status and status not in STATUSES:
        raise ClientInputError(f"unknown status {status[:30]!r}", code="invalid_request",
                               suggestion=f"Use one of: {', '.join(STATUSES)}.")
    raw_limit = request.args.get("limit", "20")
    if not re.fullmatch(r"[0-9]{1,3}", raw_limit) or not 1 <= int(raw_limit) <= 100:
        raise ClientInputError(f"limit={raw_limit[:10]!r}", code="invalid_request",
                               suggestion="Use a limit from 1 to 100.")
    limit = int(raw_limit)
    cursor = _decode_cursor(request.args.get("cursor", ""))
    items: list[dict[str, Any]] = []
    last: tuple[float, str] | None = cursor
    exhausted = False
    for _ in range(20):  # bounded scan when filtering by status
        rows = svc.store.list_ids(owner, before_ms=last[0] if last else None, limit=limit * 2 + 1,
                                  inclusive=True)
        # Ties on the score come in reverse id order: skip what the previous page already returned.
        rows = [(j, sc) for j, sc in rows if last is None or sc < last[0] or j < last[1]]
        if not rows:
            exhausted = True
            break
        for job_id, score in rows:
            last = (score, job_id)
            try:
                job = svc.store.get(job_id)
            except NanoeditError:
                continue
            if job is None or (status and job.status != status):
                continue
            items.append(_view(svc, job))
            if len(items) == limit:
                break
        if len(items) == limit:
            break
    next_cursor = None
    if not exhausted and items and last is not None:
        next_cursor = base64.urlsafe_b64encode(json.dumps([last[0], last[1]]).encode()).decode().rstrip("=")
    return jsonify({"jobs": items, "next_cursor": next_cursor})


def _decode_cursor(raw: str) -> tuple[float, str] | None:
    if not raw:
        return None
    try:
        score, job_id = json.loads(base64.urlsafe_b64decode(raw.encode() + b"=" * (-len(raw) % 4)).decode())
        return float(score), str(job_id)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ClientInputError("cursor is not one we issued", code="invalid_request",
                               suggestion="Pass next_cursor from the previous page unchanged.") from None

