"""Routes under /v1/jobs: submit, read, download outputs, cancel, list."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import caller
from api.budget import check_budget
from api.intake import Submission, parse_submission
from api.keylimits import check_submission_rate, check_waiting_jobs
from api.references import lineage, resolver
from api.services import Services, services
from api.waiting import answer_with_wait
from monitoring.metrics import JOBS_SUBMITTED
from shared.blobs import input_key, job_prefix, output_key
from shared.errors import BlobStoreUnavailable, ClientInputError, Conflict, NanoeditError, NotFound, job_error
from shared.jobs.model import STATUSES, InputMeta, Job, JobStage, JobStatus, OutputStatus, is_valid_job_id
from shared.jobs.reads import JobRead
from shared.jobs.view import public_view
from shared.jobs.waiting import eta_s
from shared.queueing import Admission

log = logging.getLogger("nanoedit.api.jobs")
bp = Blueprint("jobs", __name__)


def _view(svc: Services, job: Job, read: JobRead | None = None) -> dict[str, Any]:
    """The public job; `read` (the status read that loaded `job`) already carries its place in line and ETA."""
    if read is not None and read.job is job:
        position, eta = read.queue_position, read.estimated_wait_s
    else:
        position = None if job.terminal else svc.store.queue_position(job.id)
        eta = svc.store.estimated_wait_s(position)
    return public_view(job, base_url=svc.settings.public_base_url, queue_position=position, estimated_wait_s=eta)


def _owned_read(svc: Services, job_id: str) -> JobRead:
    """The caller's job with its place in line (one Redis round trip), or 404: another owner's job is reported as
    unknown, not forbidden (no id probing)."""
    if not is_valid_job_id(job_id):
        raise NotFound(f"{job_id[:40]!r} is not a job id", suggestion="Job ids are 32 hex characters, "
                                                                       "as returned by POST /v1/jobs.")
    owner = caller(svc.settings, request) if svc.settings.auth_enabled else None
    read = svc.store.read(job_id, owner)
    if read is None:
        raise NotFound(f"no job {job_id}", suggestion="Check the id; jobs are visible only to the key that "
                                                      "created them.")
    return read


def _owned_job(svc: Services, job_id: str) -> Job:
    return _owned_read(svc, job_id).job


_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@bp.post("/v1/jobs")
def submit() -> tuple[Response, int, dict[str, str]]:
    svc = services()
    owner = caller(svc.settings, request)
    check_submission_rate(svc)  # 429 rate_limited; every attempt counts (api/keylimits.py)
    idem_key = request.headers.get("Idempotency-Key")
    if idem_key is not None and not _IDEMPOTENCY_KEY.match(idem_key):
        raise ClientInputError("Idempotency-Key must be 1..255 visible ASCII characters", code="invalid_request",
                               suggestion="Use a UUID as the Idempotency-Key.")
    sub = parse_submission(request, svc.settings, now=svc.clock.now(), resolve=resolver(svc, owner))
    job_id = uuid.uuid4().hex
    model = _model(svc, sub)
    if idem_key:
        fingerprint = hashlib.sha256(f"{sub.request_hash(model)}|{sub.webhook_url}".encode()).hexdigest()[:32]
        existing = svc.store.claim_idempotency(owner, idem_key, job_id, fingerprint, svc.settings.job_ttl_s)
        if existing is not None:
            return _replay(svc, idem_key, existing, fingerprint)
    try:
        use_cache = "no-cache" not in request.headers.get("Cache-Control", "").lower()
        check_waiting_jobs(svc)  # 429 too_many_jobs_waiting, only when a new job would be created
        check_budget(svc, model=model, num_images=sub.num_images, image_size=sub.options.image_size,
                     input_images=len(sub.images))  # 402 budget_exhausted (api/budget.py)
        read = _create(svc, owner, sub, job_id, use_cache=use_cache)
    except BaseException:
        if idem_key:
            svc.store.release_idempotency(owner, idem_key)
        raise
    job = read.job
    JOBS_SUBMITTED.labels(job.operation).inc()
    waited = answer_with_wait(svc, job, lambda j: _view(svc, j, read), {"Location": f"/v1/jobs/{job.id}"})
    if waited is not None:  # `Prefer: wait=N` (api/waiting.py)
        return waited
    return jsonify(_view(svc, job, read)), 202, {"Location": f"/v1/jobs/{job.id}"}


def _replay(svc: Services, key: str, existing: tuple[str, str],
            fingerprint: str) -> tuple[Response, int, dict[str, str]]:
    """Same key: the same request gets its original job back; a different request is refused."""
    job_id, their_fingerprint = existing
    if their_fingerprint != fingerprint:
        raise NanoeditError(f"Idempotency-Key {key[:40]!r} belongs to job {job_id}, created from a different "
                            "request", code="idempotency_key_reused")
    job = svc.store.get(job_id)
    if job is None:
        raise Conflict(f"the job for this Idempotency-Key ({job_id}) is still being created",
                       suggestion="Retry the same request in a moment.")
    return jsonify(_view(svc, job)), 200, {"Location": f"/v1/jobs/{job.id}", "Idempotent-Replayed": "true"}


def _model(svc: Services, sub: Submission) -> str:
    """The catalogue model the job runs on (shared/models.toml; a retired one replaced) or `local`."""
    return sub.model if svc.settings.provider == "gemini" else "local"


def _create(svc: Services, owner: str, sub: Submission, job_id: str, *, use_cache: bool = True) -> JobRead:
    now = svc.clock.now()
    inputs = []
    for i, img in enumerate(sub.images):
        try:
            svc.blobs.put(input_key(job_id, i), img.data)
        except BlobStoreUnavailable:  # 503 storage_unavailable; no record refers to what was stored
            _forget_blobs(svc, job_id)
            raise
        inputs.append(InputMeta(index=i, mime_type=img.info.mime_type, bytes=len(img.data),
                                width=img.info.width, height=img.info.height, sha256=img.sha256))
    s = svc.settings
    job = Job(id=job_id, owner=owner, status=JobStatus.QUEUED, stage=JobStage.QUEUED, operation=sub.operation,
              num_images=sub.num_images, instruction=sub.instruction, image_description=sub.image_description,
              created_at=now, expires_at=now + s.job_ttl_s, deadline_at=now + s.job_deadline_s, inputs=inputs,
              webhook_url=sub.webhook_url, provider=s.provider, model=_model(svc, sub),
              model_requested=sub.model_requested, options=sub.options,
              request_hash=sub.request_hash(_model(svc, sub)),
              parents=[img.parent for img in sub.images if img.parent is not None])
    try:
        cached = svc.store.cached_result(job.request_hash) if use_cache and s.cache_ttl_s > 0 else None
        if cached is not None and cached.owner != owner:
            cached = None  # never reveal that another caller submitted the same images and instruction
        if cached is not None:
            job.cached_from = cached.id
        admission: list[Admission] = []  # a new job's admission rides in the record's own transaction
        created = svc.store.create(job, admit=None if cached is not None else (
            lambda pipe: admission.append(svc.enqueuer.admit_preprocess(pipe, job_id, owner))))
    except Exception:
        _forget_blobs(svc, job_id)
        raise NanoeditError("could not write the job record", code="service_unavailable") from None
    if cached is not None and _serve_from_cache(svc, job, cached):
        return svc.store.read(job_id) or JobRead(job, None, None)
    try:
        if admission:  # pump if the queue has room; push again if Redis lost the script (shared/queueing.py)
            admission[0](created.admit_reply)
        else:
            svc.enqueuer.preprocess(job_id, owner=owner)  # into the owner's fair line (shared/fairqueue.py)
    except Exception:
        log.exception("enqueue failed", extra={"job_id": job_id})
        svc.store.finish(job_id, JobStatus.FAILED, error=job_error(
            "internal_error", "the queue was unreachable at submission", suggestion="Submit the job again."))
        raise NanoeditError("the job could not be enqueued", code="service_unavailable") from None
    log.info("job accepted", extra={"job_id": job_id, "operation": sub.operation, "images": len(inputs),
                                    "num_images": sub.num_images})
    rate = created.rate_per_s if created.rate_per_s is not None else svc.store.refresh_rate()
    return JobRead(job, created.position, eta_s(created.position, rate))


def _forget_blobs(svc: Services, job_id: str, sub: str = "") -> None:
    """Best effort: delete what was stored for a job that will not use it (a bucket lifecycle rule is the
    backstop when the store is down: docs/operations.md, "Object storage")."""
    try:
        svc.blobs.delete_prefix(f"{job_prefix(job_id)}{sub}")
    except BlobStoreUnavailable:
        log.warning("could not delete unused blobs", extra={"job_id": job_id})


def _serve_from_cache(svc: Services, job: Job, cached: Job) -> bool:
    """Finish `job` at once with copies of `cached`'s outputs: no queue, no provider call, nothing billed."""
    try:
        for index in sorted(cached.outputs):
            svc.blobs.put(output_key(job.id, index), svc.blobs.get(output_key(cached.id, index)))
    except (FileNotFoundError, BlobStoreUnavailable):  # expired under us, or storage down: run it normally
        _forget_blobs(svc, job.id, "/outputs")
        svc.store.forget_cache_hit(job.id)
        return False
    svc.store.finish_from_cache(job.id, cached)
    log.info("served from the result cache", extra={"job_id": job.id, "cached_from": cached.id})
    return True


@bp.get("/v1/jobs/<job_id>")
def get_job(job_id: str) -> Response | tuple[Response, int, dict[str, str]]:
    svc = services()
    read = _owned_read(svc, job_id)
    job = read.job
    owner = caller(svc.settings, request)

    def view(j: Job) -> dict[str, Any]:  # only here: the chain of ancestors (api/references.py)
        return {**_view(svc, j, read), "lineage": lineage(svc, j, owner)}

    waited = answer_with_wait(svc, job, view, {})
    if waited is not None:  # `Prefer: wait=N` (api/waiting.py)
        return waited
    return jsonify(view(job))


@bp.get("/v1/jobs/<job_id>/outputs/<n>")
def get_output(job_id: str, n: str) -> Response:
    svc = services()
    job = _owned_job(svc, job_id)
    if not re.fullmatch(r"[0-9]{1,3}", n) or int(n) >= job.num_images:
        raise NotFound(f"output {n[:10]!r} does not exist; this job has {job.num_images} output(s)",
                       suggestion=f"Use an index from 0 to {job.num_images - 1}.")
    index = int(n)
    meta = job.outputs.get(index)
    if meta is None or meta.status != OutputStatus.SUCCEEDED:
        state = meta.status.value if meta else "not produced yet"
        raise Conflict(f"output {index} is {state}", suggestion="Poll GET /v1/jobs/{id} until the job "
                                                                "has finished; failed outputs have no image.")
    etag = meta.sha256 or hashlib.sha256(str(meta).encode()).hexdigest()
    if request.if_none_match.contains(etag):
        return Response(status=304, headers={"ETag": f'"{etag}"'})
    ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(meta.mime_type, "bin")
    filename = f"{job_id}-{index}.{ext}"
    if svc.settings.blob.redirects:  # NANOEDIT_BLOB_REDIRECTS: the client fetches the bytes from the store
        url = svc.blobs.presigned_get(output_key(job_id, index), svc.settings.blob.redirect_ttl_s,
                                      content_type=meta.mime_type, filename=filename)
        if url is not None:
            return Response(status=307, headers={"Location": url, "ETag": f'"{etag}"',
                                                 "Cache-Control": "private, no-store"})
    data = svc.blobs.get(output_key(job_id, index))
    return Response(data, mimetype=meta.mime_type, headers={
        "ETag": f'"{etag}"', "Cache-Control": "private, max-age=3600",
        "Content-Disposition": f'inline; filename="{filename}"'})


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
    # Waiting in the generate queue with nothing at the provider: canceled now, not when a worker gets to it.
    svc.store.cancel_now_if_idle(job_id, busy=lambda: bool(svc.limiter.holders(f"{job_id}:")))
    fresh = svc.store.get(job_id)
    assert fresh is not None
    return jsonify(_view(svc, fresh)), 202


@bp.get("/v1/jobs")
def list_jobs() -> Response:
    svc = services()
    owner = caller(svc.settings, request)
    status = request.args.get("status")  # given means given: an empty or padded value is refused, not ignored
    if status is not None and status not in STATUSES:
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
        next_cursor = _encode_cursor(last[0], last[1])
    return jsonify({"jobs": items, "next_cursor": next_cursor})


# What next_cursor is made of; the OpenAPI document gives the same pattern (CURSOR_PATTERN).
CURSOR_PATTERN = r"^([0-9]{1,15}(\.[0-9]{1,6})?~[0-9a-f]{32})?$"  # empty: the first page
_CURSOR = re.compile(r"(?P<ms>[0-9]{1,15}(\.[0-9]{1,6})?)~(?P<job>[0-9a-f]{32})")


def _decode_cursor(raw: str) -> tuple[float, str] | None:
    """A cursor: `{created_ms}~{job_id}`, the position of the last job of the previous page in the caller's own
    list. Every string of that shape is a valid position (an unknown one just starts the page there), and
    anything else is a 400 with the error body, never a 500 and never passed on to Redis."""
    if not raw:
        return None
    match = _CURSOR.fullmatch(raw)
    if match is None:
        raise ClientInputError("cursor is not one we issued", code="invalid_request",
                               suggestion="Pass next_cursor from the previous page unchanged.")
    return float(match["ms"]), match["job"]


def _encode_cursor(created_ms: float, job_id: str) -> str:
    return f"{created_ms!r}~{job_id}"



