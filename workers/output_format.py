"""Optional output conversion (the job's `output_format` / `quality`): done in the generate worker, only when
asked. Without `output_format` the provider's bytes are stored untouched (after the output bounds).

PNG is lossless (`quality` not accepted); JPEG (RGB, no alpha: flattened on white) and WebP take `quality`
1..100, default 90. A conversion that fails returns the job error `internal_error` for that output.
"""

from __future__ import annotations

import io

from PIL import Image

from shared.errors import job_error
from shared.jobs.model import JobError
from shared.jobs.options import JobOptions
from workers.providers.base import OutputImage

DEFAULT_QUALITY = 90
_PIL = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}


def convert_output(image: OutputImage, options: JobOptions) -> tuple[OutputImage, JobError | None]:
    """(the image in the requested format, None), or (the image, the output's error). No format: untouched."""
    if not options.output_format:
        return image, None
    pil_format, mime = _PIL[options.output_format]
    if image.mime_type == mime and not options.quality:
        return image, None
    try:
        with Image.open(io.BytesIO(image.data)) as src:
            src.load()
            im: Image.Image = src
            if pil_format == "JPEG" and im.mode not in ("RGB", "L"):
                rgba = im.convert("RGBA")
                im = Image.new("RGB", rgba.size, (255, 255, 255))
                im.paste(rgba, mask=rgba.getchannel("A"))
            buf = io.BytesIO()
            params = {} if pil_format == "PNG" else {"quality": options.quality or DEFAULT_QUALITY}
            im.save(buf, format=pil_format, **params)
    except (OSError, ValueError) as exc:
        return image, job_error("internal_error", f"could not convert the output to {options.output_format} "
                                                  f"({type(exc).__name__})")
    return OutputImage(buf.getvalue(), mime), None
