"""Turn a POST /v1/jobs request (multipart or JSON) into a validated `Submission`, or refuse it.

Everything a client can get wrong is caught here, before anything is stored: fields, counts per operation,
and each image's bytes (content sniffing, size, pixel count, truncation) via `shared.imaging`. The first
problem found is reported, with the field it concerns in `details`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Request

from shared.errors import ClientInputError
from shared.imaging import ImageInfo, inspect_image
from shared.jobs.model import OPERATIONS
from shared.settings import Settings

MAX_INSTRUCTION_CHARS = 4000
MAX_DESCRIPTION_CHARS = 4000
MAX_OUTPUTS = 4
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class UploadedImage:
    data: bytes
    info: ImageInfo
    sha256: str


@dataclass(frozen=True, slots=True)
class Submission:
    instruction: str
    operation: str
    image_description: str
    num_images: int
    webhook_url: str
    images: tuple[UploadedImage, ...]

    def request_hash(self, model: str) -> str:
        """Identity of the request for idempotency and the result cache (images by content hash)."""
        doc = {"instruction": self.instruction, "description": self.image_description,
               "operation": self.operation, "num_images": self.num_images, "model": model,
               "images": [i.sha256 for i in self.images]}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def parse_submission(request: Request, settings: Settings) -> Submission:
    ctype = (request.mimetype or "").lower()
    if ctype == "application/json":
        fields, raw_images = _from_json(request)
    elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields = {k: request.form.get(k) for k in request.form}
        raw_images = [f.read() for key in ("image", "images", "image[]") for f in request.files.getlist(key)]
    else:
        raise ClientInputError(f"Content-Type {ctype or '(none)'}", code="unsupported_media_type",
                               message="Send multipart/form-data or application/json.",
                               suggestion="Use multipart/form-data with 'image' file fields, or JSON with "
                                          "'images': [{'data': base64, 'mime_type': ...}].")
    return _validate(fields, raw_images, settings)


def _from_json(request: Request) -> tuple[dict[str, Any], list[bytes]]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ClientInputError("the body is not a JSON object", code="invalid_request",
                               message="The request body is not valid JSON.",
                               suggestion="Send a JSON object like {\"instruction\": \"...\", \"images\": "
                                          "[{\"data\": \"<base64>\", \"mime_type\": \"image/png\"}]}.")
    images = body.get("images", [])
    if images is None:
        images = []
    if not isinstance(images, list):
        raise ClientInputError("'images' must be a list", code="invalid_request")
    decoded: list[bytes] = []
    for i, item in enumerate(images):
        data = item.get("data") if isinstance(item, dict) else item
        if not isinstance(data, str):
            raise ClientInputError(f"images[{i}].data must be a base64 string", code="invalid_request")
        decoded.append(_b64(data, i))
    return body, decoded


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


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ClientInputError(f"'{name}' must be a string", code="invalid_request")
    return value.strip()


def _validate(fields: dict[str, Any], raw_images: list[bytes], settings: Settings) -> Submission:
    instruction = _text(fields, "instruction")
    if not instruction:
        raise ClientInputError("'instruction' is missing or blank", code="missing_instruction")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise ClientInputError(f"'instruction' has {len(instruction)} characters; the limit is "
                               f"{MAX_INSTRUCTION_CHARS}", code="invalid_request",
                               suggestion="Shorten the instruction.")
    description = _text(fields, "image_description")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ClientInputError(f"'image_description' is longer than {MAX_DESCRIPTION_CHARS} characters",
                               code="invalid_request", suggestion="Shorten the description.")
    operation = _text(fields, "operation").lower() or "edit"
    if operation not in OPERATIONS:
        raise ClientInputError(f"unknown operation {operation[:40]!r}", code="invalid_request",
                               suggestion=f"Use one of: {', '.join(OPERATIONS)}.")
    num_images = _num_images(fields.get("num_images"))
    webhook_url = _webhook(_text(fields, "webhook_url"))
    if webhook_url and not settings.webhook_secret:
        raise ClientInputError("this server has no NANOEDIT_WEBHOOK_SECRET, so it cannot sign webhooks",
                               code="invalid_request", message="Webhooks are not enabled on this server.",
                               suggestion="Omit webhook_url and poll GET /v1/jobs/{id}, or ask the operators "
                                          "to set NANOEDIT_WEBHOOK_SECRET.")
    _check_counts(operation, len(raw_images), settings.max_images)
    images = []
    for i, data in enumerate(raw_images):
        try:
            info = inspect_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
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
        raise ClientInputError(f"num_images={value} is outside 1..{MAX_OUTPUTS}", code="invalid_request",
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


def _webhook(url: str) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2048:
        raise ClientInputError("webhook_url must be an absolute http(s) URL", code="invalid_request",
                               suggestion="Send a URL like https://example.com/hooks/nanoedit, or omit it.")
    return url
