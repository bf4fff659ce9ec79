"""OpenAPI parts for inputs taken from earlier outputs (api/references.py): the two shapes of a JSON image, the
image counts of a multipart body (uploads plus `from_job` references), and the ParentRef / lineage entries."""

from __future__ import annotations

from typing import Any

from api.openapi_parts import _JOB_ID_PATTERN, MAX_OUTPUTS, _obj


def parent_schema(*, lineage: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {
        "job_id": {"type": "string", "pattern": _JOB_ID_PATTERN},
        "output": {"type": "integer", "minimum": 0, "maximum": MAX_OUTPUTS - 1},
        "url": {"type": "string", "description": "The output's download URL (while the job is kept)."}}
    if lineage:
        props["available"] = {"type": "boolean", "description": "false: that job expired (the chain ends)."}
    return _obj(props, description="An earlier job's output used as an input.")


def json_image_schema(upload: dict[str, Any]) -> dict[str, Any]:
    """Exactly one of: uploaded bytes ({data, mime_type}) or a reference ({job_id, output})."""
    upload = {**upload, "not": {"anyOf": [{"required": ["job_id"]}, {"required": ["output"]}]}}
    reference = _obj({"job_id": {"type": "string", "pattern": _JOB_ID_PATTERN,
                                 "description": "One of your jobs (32 hex characters)."},
                      "output": {"type": "integer", "minimum": 0, "maximum": MAX_OUTPUTS - 1,
                                 "description": "Which of its outputs; it must have succeeded."}},
                     additionalProperties=False,
                     description="An earlier output of one of your jobs, used without re-uploading it "
                                 "(422 invalid_reference when unknown, expired, another key's or not succeeded).")
    return {"oneOf": [upload, reference], "description": "An image: uploaded bytes, or an earlier output."}


def _total(max_images: int, low: int, high: int) -> dict[str, Any]:
    """`image` files plus `from_job` values number from `low` to `high` (api/intake.py `_check_counts`)."""
    branches = []
    for k in range(max_images + 1):  # k = how many from_job values
        img_min, img_max = max(0, low - k), high - k
        if img_max < 0:
            continue
        refs: dict[str, Any] = ({"required": ["from_job"], "properties": {"from_job": {"minItems": k, "maxItems": k}}}
                                if k else {"anyOf": [{"not": {"required": ["from_job"]}},
                                                     {"properties": {"from_job": {"maxItems": 0}}}]})
        images: dict[str, Any] = {"properties": {"image": {"minItems": img_min, "maxItems": img_max}}}
        if img_min:
            images["required"] = ["image"]
        branches.append({"allOf": [refs, images]})
    return {"anyOf": branches}


def multipart_counts(max_images: int) -> list[dict[str, Any]]:
    """1..max_images images in all; compose ≥ 2; style_transfer exactly 2 (content, then style)."""
    def when(operation: str, low: int, high: int) -> dict[str, Any]:
        return {"if": {"properties": {"operation": {"const": operation}}, "required": ["operation"]},
                "then": _total(max_images, low, high)}

    return [_total(max_images, 1, max_images), when("compose", 2, max_images), when("style_transfer", 2, 2)]
