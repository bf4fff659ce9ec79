"""Inputs taken from earlier outputs ("edit a previous result without re-uploading") and a job's lineage.

A submission may name `{"job_id": ..., "output": n}` (JSON) or `from_job=<job_id>[:<n>]` (multipart) instead of
uploading an image. `resolver` turns such a reference into the image it names, in the web process and before
anything is stored: the job must be the caller's own (another key's job is refused exactly like an unknown or
expired one: 422 invalid_reference, nothing to probe), the output must have succeeded, and its bytes must still
be stored. The bytes are copied as the new job's input (the child does not depend on its parent living on), and
the input's metadata comes from the output's recorded result: no pixel is decoded here.

`lineage` follows first parents up to `MAX_LINEAGE` ancestors for GET /v1/jobs/{id}.
"""

from __future__ import annotations

import hashlib
from typing import Any

from api.intake import Resolver, UploadedImage
from api.services import Services
from shared.blobs import output_key
from shared.errors import ClientInputError, NanoeditError
from shared.imaging import ImageInfo
from shared.jobs.model import Job, OutputStatus, ParentRef

MAX_LINEAGE = 20
_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def _visible(svc: Services, owner: str, job_id: str) -> Job | None:
    """The caller's job, or None when unknown, expired or another key's (never told apart)."""
    try:
        job = svc.store.get(job_id)
    except NanoeditError:  # Gone: expired
        return None
    if job is None or (svc.settings.auth_enabled and job.owner != owner):
        return None
    return job


def resolver(svc: Services, owner: str) -> Resolver:
    s = svc.settings

    def resolve(ref: ParentRef, index: int) -> UploadedImage:
        job = _visible(svc, owner, ref.job_id)
        if job is None:
            raise ClientInputError(f"image {index}: no job {ref.job_id} of yours (unknown or expired)",
                                   code="invalid_reference")
        meta = job.outputs.get(ref.output)
        if meta is None or meta.status != OutputStatus.SUCCEEDED:
            state = meta.status.value if meta is not None else ("not produced yet" if ref.output < job.num_images
                                                                else "not requested")
            raise ClientInputError(f"image {index}: output {ref.output} of job {ref.job_id} is {state}",
                                   code="invalid_reference",
                                   suggestion="Refer to an output listed in the job's 'outputs' (wait for the job "
                                              "to finish: GET /v1/jobs/{id}).")
        if meta.bytes > s.max_image_bytes:
            raise ClientInputError(f"image {index}: {meta.bytes} bytes exceeds the limit of {s.max_image_bytes} "
                                   "bytes", code="image_too_large")
        if meta.width * meta.height > s.max_image_pixels:
            raise ClientInputError(f"image {index}: {meta.width}x{meta.height} exceeds {s.max_image_pixels} "
                                   "pixels", code="image_too_many_pixels")
        try:
            data = svc.blobs.get(output_key(ref.job_id, ref.output))
        except FileNotFoundError:  # expiring under us
            raise ClientInputError(f"image {index}: output {ref.output} of job {ref.job_id} has expired",
                                   code="invalid_reference") from None
        info = ImageInfo(format=_FORMATS.get(meta.mime_type, "PNG"), mime_type=meta.mime_type,
                         width=meta.width, height=meta.height, frames=1)
        return UploadedImage(data=data, info=info, sha256=hashlib.sha256(data).hexdigest(), parent=ref)

    return resolve


def lineage(svc: Services, job: Job, owner: str) -> list[dict[str, Any]]:
    """Ancestors, nearest first, following each job's first parent: at most MAX_LINEAGE entries, and it stops at
    an ancestor that expired (that entry is still listed: the child recorded it)."""
    base = svc.settings.public_base_url
    chain: list[dict[str, Any]] = []
    seen = {job.id}
    current: Job | None = job
    while current is not None and current.parents and len(chain) < MAX_LINEAGE:
        ref = current.parents[0]
        if ref.job_id in seen:
            break
        seen.add(ref.job_id)
        current = _visible(svc, owner, ref.job_id)
        chain.append({**ref.to_dict(), "url": f"{base}/v1/jobs/{ref.job_id}/outputs/{ref.output}",
                      "available": current is not None})
    return chain
