"""Turn a POST /v1/jobs request (multipart or JSON) into a validated `Submission`, or refuse it.

Everything a client can get wrong is caught here, before anything is stored: fields, counts per operation,
and each image's header (content sniffing, size, dimensions, pixel and frame counts) via
`shared.imaging.inspect_header`. The first problem found is reported, with the field it concerns in `details`.

Bounded (docs/api.md, "Limits and accepted formats"): url-encoded bodies are refused (415) before they are
read; multipart is streamed by werkzeug's parser under the app's MAX_CONTENT_LENGTH / MAX_FORM_PARTS /
MAX_FORM_MEMORY_SIZE (file parts spool to disk); JSON goes through `api.bodies` (size, depth, NaN, duplicate
keys); counts and byte sizes (base64 measured, not decoded) are checked before any image is read; no pixel is
ever decoded in the web process: truncation and damaged pixel data fail the job in the preprocess worker.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import functools
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from api.bodies import read_json_object
from api.webhook_url import checked_webhook_url
from shared.catalogue import check_options, load_catalogue
from shared.errors import ClientInputError
from shared.imaging import ImageInfo, inspect_header
from shared.jobs.model import OPERATIONS, ParentRef
from shared.jobs.options import OUTPUT_FORMATS, JobOptions
from shared.settings import Settings

MAX_DESCRIPTION_CHARS = 4000
OPTION_FIELDS = ("model", "aspect_ratio", "image_size", "thinking_level",  # checked against shared/models.toml
                 "output_format", "quality")  # converted in the worker (workers/output_format.py)
TEXT_FIELDS = ("instruction", "operation", "image_description", "num_images", "webhook_url", *OPTION_FIELDS)
IMAGE_FIELDS = ("image", "images", "image[]")
# The one list of accepted fields: anything else is refused (422 unknown_field), never silently ignored.
JSON_FIELDS = (*TEXT_FIELDS, "images")
MULTIPART_FIELDS = (*TEXT_FIELDS, *IMAGE_FIELDS, "from_job")  # from_job: api/references.py
# NUL and other C0 controls (tab, newline, carriage return allowed), U+FFFD (what invalid UTF-8 decodes to in a
# multipart field) and lone surrogates (JSON "\ud800", not storable as UTF-8).
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd\ud800-\udfff]")
MAX_OUTPUTS = 4
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class UploadedImage:
    data: bytes
    info: ImageInfo
    sha256: str
    parent: ParentRef | None = None  # taken from an earlier job's output (api/references.py)


@dataclass(frozen=True, slots=True)
class RawImage:
    """One image of the request before it is read: its size is known without holding (or decoding) its bytes."""

    size: int
    read: Callable[[], bytes]
    ref: ParentRef | None = None  # an earlier output, resolved (not read) by the caller's `Resolver`


# Turns a reference to an earlier output into the image it names, or refuses it (422 invalid_reference).
Resolver = Callable[[ParentRef, int], UploadedImage]


@dataclass(frozen=True, slots=True)
class Submission:
    instruction: str
    operation: str
    image_description: str
    num_images: int
    webhook_url: str
    images: tuple[UploadedImage, ...]
    model: str = ""  # the catalogue model the job runs on (a retired request's replacement)
    model_requested: str = ""  # what the client named ("" = none: the configured default)
    options: JobOptions = field(default_factory=JobOptions)

    def request_hash(self, model: str) -> str:
        """Identity of the request for idempotency and the result cache (images by content hash)."""
        doc = {"instruction": self.instruction, "description": self.image_description,
               "operation": self.operation, "num_images": self.num_images, "model": model,
               "images": [i.sha256 for i in self.images], **self.options.to_dict()}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def parse_submission(request: Request, settings: Settings, *, now: float | None = None,
                     resolve: Resolver | None = None) -> Submission:
    """`now` (epoch seconds, from the injected clock) decides which models are retired; None = today (UTC).
    `resolve` reads a referenced earlier output (api/references.py); without it references are refused."""
    ctype = (request.mimetype or "").lower()
    if ctype == "application/json":
        fields, raw_images = _from_json(request, settings)
    elif ctype == "multipart/form-data":
        fields, raw_images = _from_multipart(request, settings)
    else:  # url-encoded included: it cannot carry files, and its parser reads the whole body at once
        raise ClientInputError(f"Content-Type {ctype[:80] or '(none)'}", code="unsupported_media_type",
                               message="Send multipart/form-data or application/json.",
                               suggestion="Use multipart/form-data with 'image' file fields, or JSON with "
                                          "'images': [{'data': base64, 'mime_type': ...}].")
    _refuse_unknown(fields, JSON_FIELDS if ctype == "application/json" else MULTIPART_FIELDS)
    today = dt.datetime.fromtimestamp(now, dt.UTC).date() if now is not None else dt.datetime.now(dt.UTC).date()
    return _with_options(_validate(fields, raw_images, settings, resolve), fields, settings, today)


def _refuse_unknown(fields: dict[str, Any], accepted: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in fields if k not in accepted)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise ClientInputError(f"unknown field(s): {shown}", code="unknown_field",
                               suggestion=f"Accepted fields: {', '.join(accepted)}.")


def _with_options(sub: Submission, fields: dict[str, Any], settings: Settings, today: dt.date) -> Submission:
    """The model (a retired one replaced, or 422 model_retired) and the options it accepts (else 422)."""
    catalogue = load_catalogue(settings.models_file)
    requested = _option(fields, "model")
    if requested and requested not in catalogue.models:
        usable = ", ".join(m.id for m in catalogue.available(today))
        raise ClientInputError(f"unknown model {requested[:60]!r}", code="invalid_option",
                               suggestion=f"Use one of: {usable} (GET /v1/models lists them).")
    resolved = catalogue.resolve(requested or settings.gemini_model, today)
    output_format, quality = _output_format(fields)
    options = JobOptions(aspect_ratio=_option(fields, "aspect_ratio"), image_size=_option(fields, "image_size"),
                         thinking_level=_option(fields, "thinking_level"), output_format=output_format,
                         quality=quality)
    check_options(resolved.model, options, len(sub.images))
    return dataclasses.replace(sub, model=resolved.model.id, model_requested=resolved.requested if requested else "",
                               options=options)


def _from_multipart(request: Request, settings: Settings) -> tuple[dict[str, Any], list[RawImage]]:
    if not request.mimetype_params.get("boundary"):
        raise ClientInputError("multipart/form-data without a boundary parameter", code="invalid_request",
                               suggestion="Let your HTTP client build the multipart body (curl -F, "
                                          "requests' files=...).")
    declared = request.content_length
    if declared is not None and declared > settings.max_request_bytes:  # before a byte of it is read
        raise ClientInputError(f"body of {declared} bytes exceeds the limit of {settings.max_request_bytes} bytes",
                               code="payload_too_large")
    try:
        form, files = request.form, request.files  # werkzeug streams the parts; files spool to disk
    except RequestEntityTooLarge:
        raise ClientInputError(
            f"the multipart body is over a limit: at most {settings.max_form_parts} parts, "
            f"{settings.max_form_field_bytes} bytes per text field, {settings.max_request_bytes} bytes in all",
            code="payload_too_large",
            suggestion=f"Send at most {settings.max_images} images and only the documented fields; keep "
                       f"'instruction' under {settings.max_instruction_chars} characters.") from None
    if declared and (request.stream.tell() < declared or not (form or files)):
        # Fewer bytes than Content-Length announced, or parts werkzeug could not read (it drops a malformed or
        # cut-off multipart body silently): say so rather than "instruction missing".
        raise ClientInputError(f"the multipart body ended early or has no readable parts ({declared} bytes "
                               "announced)", code="invalid_request",
                               suggestion="Send a complete multipart/form-data body whose Content-Length is its "
                                          "exact size (let your HTTP client build it).")
    fields: dict[str, Any] = {key: None for key in (*form.keys(), *files.keys()) if key not in IMAGE_FIELDS}
    for key in TEXT_FIELDS:
        values = form.getlist(key)
        if len(values) > 1:
            raise ClientInputError(f"field '{key}' was sent {len(values)} times", code="invalid_request",
                                   suggestion=f"Send '{key}' once.")
        if values:
            fields[key] = values[0]
    if "from_job" in files:
        raise ClientInputError("'from_job' was sent as a file", code="invalid_request",
                               suggestion="Send from_job as a plain form field: <job_id> or <job_id>:<n>.")
    # Referenced outputs first (in field order), then the uploaded files (docs/api.md).
    raw = [RawImage(size=0, read=bytes, ref=parse_from_job(v, i)) for i, v in enumerate(form.getlist("from_job"))]
    raw += [RawImage(size=_stream_size(f.stream), read=f.read) for key in IMAGE_FIELDS for f in files.getlist(key)]
    return fields, raw


def _stream_size(stream: Any) -> int:
    stream.seek(0, io.SEEK_END)
    size = int(stream.tell())
    stream.seek(0)
    return size


def _from_json(request: Request, settings: Settings) -> tuple[dict[str, Any], list[RawImage]]:
    body = read_json_object(request, max_bytes=min(settings.max_json_bytes, settings.max_request_bytes),
                            max_depth=settings.max_json_depth)
    images = body.get("images", [])
    if images is None:
        images = []
    if not isinstance(images, list):
        raise ClientInputError("'images' must be a list", code="invalid_request")
    raw: list[RawImage] = []
    for i, item in enumerate(images):
        if isinstance(item, dict) and ("job_id" in item or "output" in item):
            raw.append(RawImage(size=0, read=bytes, ref=parse_json_ref(item, i)))
            continue
        data = item.get("data") if isinstance(item, dict) else item
        if not isinstance(data, str):
            raise ClientInputError(f"images[{i}].data must be a base64 string", code="invalid_request")
        raw.append(RawImage(size=_b64_size(data), read=functools.partial(_b64, data, i)))
    return body, raw


def _b64_size(text: str) -> int:
    """Decoded size of a base64 string, from its length (whitespace and a data: prefix not counted): no copy,
    no decode, so an oversize image is refused before it costs anything."""
    prefix = _DATA_URL.match(text[:256].lstrip())
    chars = len(text) - sum(text.count(c) for c in " \t\r\n") - (prefix.end() if prefix else 0)
    return max(0, chars * 3 // 4 - (2 if text.rstrip().endswith("==") else 1 if text.rstrip().endswith("=") else 0))


def _b64(text: str, index: int) -> bytes:
    text = _DATA_URL.sub("", text.strip())
    text = re.sub(r"\s+", "", text)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ClientInputError(f"images[{index}].data is not valid base64", code="invalid_request",
                               message="An image's base64 data could not be decoded.",
                               suggestion="Encode the raw image file bytes with standard base64 "
                                          "(a data: URL prefix is accepted).") from exc


def _output_format(fields: dict[str, Any]) -> tuple[str, int]:
    """(output_format, quality): png/jpeg/webp or "" (untouched); quality 1..100 only with jpeg or webp."""
    fmt = _option(fields, "output_format")
    if fmt and fmt not in OUTPUT_FORMATS:
        raise ClientInputError(f"output_format={fmt[:20]!r}", code="invalid_option",
                               suggestion=f"Use output_format one of: {', '.join(OUTPUT_FORMATS)} (or leave it out "
                                          "for the model's own bytes).")
    raw = fields.get("quality")
    if raw is None or raw == "":
        return fmt, 0
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    is_int = isinstance(raw, int) and not isinstance(raw, bool)
    quality = int(raw) if is_int or (isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 3) else 0
    if not 1 <= quality <= 100:
        raise ClientInputError(f"quality={str(raw)[:20]!r}", code="invalid_request",
                               suggestion="Send quality as an integer from 1 to 100.")
    if fmt not in ("jpeg", "webp"):
        raise ClientInputError("quality without output_format jpeg or webp", code="invalid_option",
                               suggestion="Send quality together with output_format=jpeg or output_format=webp.")
    return fmt, quality


def _option(fields: dict[str, Any], name: str) -> str:
    """An option value exactly as sent (no trimming, no case folding): it must be one GET /v1/models lists."""
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ClientInputError(f"'{name}' must be a string", code="invalid_request")
    return value


def _text(fields: dict[str, Any], name: str) -> str:
    value = _option(fields, name)
    bad = _BAD_TEXT.search(value)
    if bad is not None:
        what = "invalid UTF-8" if bad.group() == "\ufffd" else f"character U+{ord(bad.group()):04X}"
        raise ClientInputError(f"'{name}' holds {what} at position {bad.start()}", code="invalid_request",
                               suggestion="Send text fields as valid UTF-8 without NUL or other control "
                                          "characters (tab and newline are fine).")
    return value.strip()


def _validate(fields: dict[str, Any], raw_images: list[RawImage], settings: Settings,
              resolve: Resolver | None = None) -> Submission:
    instruction = _text(fields, "instruction")
    if not instruction:
        raise ClientInputError("'instruction' is missing or blank", code="missing_instruction")
    if len(instruction) > settings.max_instruction_chars:
        raise ClientInputError(f"'instruction' has {len(instruction)} characters; the limit is "
                               f"{settings.max_instruction_chars}", code="invalid_request",
                               suggestion=f"Shorten the instruction to at most {settings.max_instruction_chars} "
                                          "characters.")
    description = _text(fields, "image_description")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ClientInputError(f"'image_description' is longer than {MAX_DESCRIPTION_CHARS} characters",
                               code="invalid_request", suggestion="Shorten the description.")
    operation = _text(fields, "operation").lower() or "edit"
    if operation not in OPERATIONS:
        raise ClientInputError(f"unknown operation {operation[:40]!r}", code="invalid_request",
                               suggestion=f"Use one of: {', '.join(OPERATIONS)}.")
    num_images = _num_images(fields.get("num_images"))
    webhook_url = checked_webhook_url(_text(fields, "webhook_url"), settings)  # guard + signing secret
    _check_counts(operation, len(raw_images), settings.max_images)  # before any image is read
    for i, raw in enumerate(raw_images):
        if raw.size > settings.max_image_bytes:
            raise ClientInputError(f"image {i}: {raw.size} bytes exceeds the limit of {settings.max_image_bytes} "
                                   "bytes", code="image_too_large")
    images = []
    for i, raw in enumerate(raw_images):
        if raw.ref is not None:
            if resolve is None:
                raise ClientInputError(f"image {i} refers to an earlier output", code="invalid_reference")
            images.append(resolve(raw.ref, i))
            continue
        data = raw.read()
        try:
            info = inspect_header(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                                  max_frames=settings.max_frames)
        except ClientInputError as exc:
            exc.details = f"image {i}: {exc.details}"
            raise
        images.append(UploadedImage(data=data, info=info, sha256=hashlib.sha256(data).hexdigest()))
    return Submission(instruction=instruction, operation=operation, image_description=description,
                      num_images=num_images, webhook_url=webhook_url, images=tuple(images))


def _num_images(raw: Any) -> int:
    if raw is None or raw == "":
        return 1
    if isinstance(raw, bool):
        raw = "bool"
    try:
        value = int(raw) if not isinstance(raw, float) or raw.is_integer() else -1
    except (TypeError, ValueError):
        raise ClientInputError(f"num_images={str(raw)[:20]!r} is not an integer", code="invalid_request",
                               suggestion=f"Send num_images as an integer from 1 to {MAX_OUTPUTS}.") from None
    if not 1 <= value <= MAX_OUTPUTS:
        shown = str(value) if -10**6 < value < 10**6 else f"{str(value)[:8]}… ({len(str(value))} digits)"
        raise ClientInputError(f"num_images={shown} is outside 1..{MAX_OUTPUTS}", code="invalid_request",
                               suggestion=f"Send num_images as an integer from 1 to {MAX_OUTPUTS}.")
    return value


def _check_counts(operation: str, count: int, max_images: int) -> None:
    if count == 0:
        raise ClientInputError("no image was attached", code="not_enough_images")
    if operation == "compose" and count < 2:
        raise ClientInputError(f"compose needs at least 2 images, got {count}", code="not_enough_images")
    if operation == "style_transfer" and count < 2:
        raise ClientInputError(f"style_transfer needs exactly 2 images (content, style), got {count}",
                               code="not_enough_images")
    if operation == "style_transfer" and count > 2:
        raise ClientInputError(f"style_transfer needs exactly 2 images (content, style), got {count}",
                               code="too_many_images")
    if count > max_images:
        raise ClientInputError(f"{count} images; the limit is {max_images}", code="too_many_images")


_FROM_JOB = re.compile(rf"^(?P<job>[0-9a-f]{{32}})(:(?P<n>[0-{MAX_OUTPUTS - 1}]))?$")
FROM_JOB_PATTERN = _FROM_JOB.pattern.replace("?P<job>", "").replace("?P<n>", "")  # the same, for OpenAPI


def parse_from_job(value: str, index: int) -> ParentRef:
    """A multipart `from_job` value: `<job_id>` (its output 0) or `<job_id>:<n>` (its output n)."""
    match = _FROM_JOB.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ClientInputError(f"from_job[{index}]={value[:50]!r} is not <job_id> or <job_id>:<n>",
                               code="invalid_request",
                               suggestion="Send from_job as a job id (32 hex characters, its output 0) or "
                                          f"'<job_id>:<n>' with n from 0 to {MAX_OUTPUTS - 1}.")
    return ParentRef(job_id=match["job"], output=int(match["n"] or 0))


def parse_json_ref(item: dict[str, Any], index: int) -> ParentRef:
    """A JSON `images` item of the reference shape: exactly {"job_id": "<32 hex>", "output": n}."""
    suggestion = ("Send each image either as {'data': base64, 'mime_type': ...} or as {'job_id': '<32 hex>', "
                  f"'output': n}} with n from 0 to {MAX_OUTPUTS - 1}, never both.")
    extra = sorted(str(k)[:40] for k in item if k not in ("job_id", "output"))
    if extra:
        raise ClientInputError(f"images[{index}] mixes a reference with {', '.join(extra[:5])}",
                               code="invalid_request", suggestion=suggestion)
    job_id, output = item.get("job_id"), item.get("output")
    if isinstance(output, float) and output.is_integer():
        output = int(output)
    if not isinstance(job_id, str) or _FROM_JOB.fullmatch(job_id) is None or ":" in job_id:
        raise ClientInputError(f"images[{index}].job_id must be a job id (32 hex characters)",
                               code="invalid_request", suggestion=suggestion)
    if not isinstance(output, int) or isinstance(output, bool) or not 0 <= output < MAX_OUTPUTS:
        raise ClientInputError(f"images[{index}].output must be an integer from 0 to {MAX_OUTPUTS - 1}",
                               code="invalid_request", suggestion=suggestion)
    return ParentRef(job_id=job_id, output=output)
