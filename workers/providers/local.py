"""The `local` provider: a deterministic, offline Pillow editor that follows plain-English instructions.

It is what runs without a Gemini key (development, demos, CI, load and chaos tests), so it honours the
same contract as a real provider: prepared images + instruction in, PNG images out, `ProviderError`s for
failures. It understands a fixed vocabulary (`UNDERSTOOD`), case-insensitive; several operations in one
instruction are applied in the order they appear ("make it black and white and rotate 90 degrees").

Rotation follows what people mean, not Pillow's convention: "rotate 90" turns the picture clockwise
(Pillow's `rotate()` is counter-clockwise), "rotate left" / "counterclockwise" / a negative angle turns it
the other way; the canvas grows to fit, so a 90° turn swaps width and height.

Bounded output: after the composition and after every operation the result is scaled down (never up) to fit
`max_long_edge` (`NANOEDIT_MAX_LONG_EDGE` from `build_provider`; 4096 when built directly), so chained
rotations by 45° or a compose of many wide images cannot grow the canvas without limit; the result text then
ends with "fitted to N px".

Operations: `edit` edits images[0] (extra images are ignored) and needs at least one recognised operation,
else `NoImageGenerated`; `compose` puts all images side by side at a common height; `style_transfer` gives
images[0] the colour statistics (per-channel mean and spread, in RGB) of images[1]. Recognised adjustments
are applied after the composition or transfer. Output is always PNG with no metadata, so equal requests give
byte-identical results (`output_index` does not vary the output).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageEnhance, ImageFilter, ImageOps, ImageStat

from shared.clock import Clock, SystemClock
from workers.providers.base import (
    EditRequest,
    EditResult,
    InvalidProviderRequest,
    NoImageGenerated,
    OutputImage,
)

UNDERSTOOD: tuple[str, ...] = (
    "brighter [by N%]", "darker [by N%]", "more contrast", "less contrast", "saturate / vivid",
    "desaturate", "grayscale / black and white", "sepia", "invert / negative", "blur [radius N]",
    "sharpen", "rotate N degrees / rotate left / rotate right", "flip / upside down",
    "mirror / flip horizontally", "crop to square", "resize to N px", "make it N px wide",
)
MAX_EDGE = 4096  # cap on any edge an instruction can ask for ("resize to 100000 px" is refused by clamping)
_SEPIA = (0.393, 0.769, 0.189, 0.0, 0.349, 0.686, 0.168, 0.0, 0.272, 0.534, 0.131, 0.0)
_CW = r"counter[\s-]?clockwise|anti[\s-]?clockwise|ccw|clockwise|cw|(?:to\s+the\s+)?(?:left|right)"
_IT = r"(?:(?:it|the\s+(?:image|picture|photo))\s+)?"

Transform = Callable[[Image.Image], Image.Image]


def _rgb(fn: Transform) -> Transform:
    """Run a colour transform on the RGB channels only; an alpha channel passes through untouched."""

    def apply(im: Image.Image) -> Image.Image:
        if im.mode != "RGBA":
            return fn(im.convert("RGB"))
        *colour, alpha = im.split()
        out = fn(Image.merge("RGB", colour)).convert("RGB")
        out.putalpha(alpha)
        return out

    return apply


def _premultiplied(fn: Transform) -> Transform:
    """Run a filter that mixes neighbouring pixels on premultiplied alpha, so transparent pixels' hidden
    colour does not bleed into visible edges (Pillow's resize does this itself; filters and rotate don't)."""

    def apply(im: Image.Image) -> Image.Image:
        return fn(im.convert("RGBa")).convert("RGBA") if im.mode == "RGBA" else fn(im)

    return apply


@dataclass(frozen=True, slots=True)
class Operation:
    """One recognised step: a label for the result text and the pixel transform."""

    label: str
    apply: Transform


def _pct(m: re.Match[str], *groups: str) -> int | None:
    for g in groups:
        if m.group(g):
            return min(int(m.group(g)), 500)
    return None


def _brighter(m: re.Match[str]) -> Operation:
    pct = _pct(m, "br_pre", "br_post")
    factor = 1 + (pct if pct is not None else 30) / 100
    return Operation(f"brighter {factor - 1:.0%}", _rgb(lambda im: ImageEnhance.Brightness(im).enhance(factor)))


def _darker(m: re.Match[str]) -> Operation:
    pct = _pct(m, "dk_pre", "dk_post")
    factor = max(0.0, 1 - (pct if pct is not None else 30) / 100)
    return Operation(f"darker {1 - factor:.0%}", _rgb(lambda im: ImageEnhance.Brightness(im).enhance(factor)))


def _enhance(label: str, kind: type[ImageEnhance.Color | ImageEnhance.Contrast], factor: float
             ) -> Callable[[re.Match[str]], Operation]:
    return lambda m: Operation(label, _rgb(lambda im: kind(im).enhance(factor)))


def _blur(m: re.Match[str]) -> Operation:
    radius = min(float(m.group("blur_r") or 2), 50.0)
    return Operation(f"blur radius {radius:g}",
                     _premultiplied(lambda im: im.filter(ImageFilter.GaussianBlur(radius))))


def _is_counter_clockwise(direction: str) -> bool:
    return any(word in direction.lower() for word in ("counter", "anti", "ccw", "left"))


def _rotate_degrees(m: re.Match[str]) -> Operation:
    degrees = int(m.group("rot_deg"))
    return _rotation(-degrees if _is_counter_clockwise(m.group("rot_dir") or "") else degrees)


def _rotate_word(m: re.Match[str]) -> Operation:
    return _rotation(-90 if _is_counter_clockwise(m.group("rot_word")) else 90)


def _rotation(clockwise: int) -> Operation:
    """Clockwise degrees, any integer; right angles are exact transposes, others resample with clear corners."""
    angle = clockwise % 360
    label = f"rotate {angle}°" if clockwise >= 0 else f"rotate {-clockwise}° counter-clockwise"
    exact = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}

    def apply(im: Image.Image) -> Image.Image:
        if angle == 0:
            return im
        if angle in exact:
            return im.transpose(exact[angle])
        turn = _premultiplied(lambda rgba: rgba.rotate(-angle, resample=Image.Resampling.BICUBIC, expand=True,
                                                       fillcolor=(0, 0, 0, 0)))
        return turn(im.convert("RGBA"))

    return Operation(label, apply)


def _crop_square(_: re.Match[str]) -> Operation:
    def apply(im: Image.Image) -> Image.Image:
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        return im.crop((left, top, left + side, top + side))

    return Operation("crop to square", apply)


def _resize_long_edge(m: re.Match[str]) -> Operation:
    if m.group("rs_wide"):
        return _resize_width(int(m.group("rs_px")))
    target = max(1, min(int(m.group("rs_px")), MAX_EDGE))
    return Operation(f"resize to {target} px", lambda im: _scaled(im, target / max(im.size)))


def _resize_width(width: int) -> Operation:
    target = max(1, min(width, MAX_EDGE))
    return Operation(f"{target} px wide", lambda im: _scaled(im, target / im.width))


def _scaled(im: Image.Image, scale: float) -> Image.Image:
    scale = min(scale, MAX_EDGE / max(im.size))
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im if size == im.size else im.resize(size, Image.Resampling.LANCZOS)


def _fixed(label: str, transform: Transform) -> Callable[[re.Match[str]], Operation]:
    return lambda m: Operation(label, transform)


# (pattern, builder). At one position the first rule that matches wins, so specific forms come first
# ("flip horizontally" before "flip"). Inner group names are unique across all rules.
_RULES: Sequence[tuple[str, Callable[[re.Match[str]], Operation]]] = (
    (r"gr[ae]y[\s-]*scaled?|black[\s-]*(?:and|&|n)[\s-]*white|b\s*&\s*w|b/w|monochrome",
     _fixed("grayscale", _rgb(lambda im: im.convert("L").convert("RGB")))),
    (r"sepia", _fixed("sepia", _rgb(lambda im: im.convert("RGB", _SEPIA)))),
    (r"invert(?:ed)?|negative", _fixed("invert", _rgb(ImageOps.invert))),
    (r"desaturat\w*|less\s+(?:saturat\w*|colou?rful)|muted",
     _enhance("desaturate", ImageEnhance.Color, 0.5)),
    (r"saturate|more\s+(?:saturat\w*|colou?rful)|vivid|vibrant", _enhance("saturate", ImageEnhance.Color, 1.6)),
    (r"(?:more|increase|increased|higher|boost|add)\s+(?:the\s+)?contrast",
     _enhance("more contrast", ImageEnhance.Contrast, 1.4)),
    (r"(?:less|reduce|reduced|decrease|lower)\s+(?:the\s+)?contrast",
     _enhance("less contrast", ImageEnhance.Contrast, 0.7)),
    (r"(?:(?P<br_pre>\d{1,3})\s*%\s+)?(?:brighter|brighten|lighter|lighten)"
     rf"(?:\s+{_IT}by\s+(?P<br_post>\d{{1,3}})\s*%)?", _brighter),
    (r"(?:(?P<dk_pre>\d{1,3})\s*%\s+)?(?:darker|darken)"
     rf"(?:\s+{_IT}by\s+(?P<dk_post>\d{{1,3}})\s*%)?", _darker),
    (rf"blur(?:red|ry)?(?:\s+{_IT}(?:with\s+)?(?:a\s+)?radius\s+(?:of\s+)?(?P<blur_r>\d{{1,3}}(?:\.\d+)?)"
     r"(?:\s*px)?)?", _blur),
    (r"sharpen\w*|sharper",
     _fixed("sharpen", _premultiplied(lambda im: im.filter(ImageFilter.UnsharpMask(2, 150, 3))))),
    (rf"rotated?\s+{_IT}(?:by\s+)?(?P<rot_deg>[-+]?\d{{1,4}})\s*(?:°|degrees?|deg)?(?:\s+(?P<rot_dir>{_CW}))?",
     _rotate_degrees),
    (rf"rotated?\s+{_IT}(?P<rot_word>{_CW})", _rotate_word),
    (rf"mirror(?:ed)?|flip(?:ped)?\s+{_IT}(?:horizontally|horizontal|sideways|left\s*(?:to|-)\s*right)",
     _fixed("mirror", ImageOps.mirror)),
    (rf"flip(?:ped)?(?:\s+{_IT}(?:vertically|vertical|upside\s*-?\s*down))?|upside\s*-?\s*down",
     _fixed("flip", ImageOps.flip)),
    (rf"(?:cent(?:er|re)\s+)?crop(?:ped)?\s+{_IT}(?:to\s+)?(?:a\s+)?square|square\s+crop|make\s+it\s+square",
     _crop_square),
    (r"(?:resize|scale|downscale|upscale)d?\s+(?:it\s+)?(?:to\s+)?(?P<rs_px>\d{1,5})\s*(?:px|pixels?)"
     r"(?P<rs_wide>\s+wide)?", _resize_long_edge),
    (r"(?:make\s+it\s+)?(?P<w_px>\d{1,5})\s*(?:px|pixels?)\s+wide",
     lambda m: _resize_width(int(m.group("w_px")))),
)
_PATTERN = re.compile(
    "|".join(rf"(?<!\w)(?P<rule{i}>{pattern})(?!\w)" for i, (pattern, _) in enumerate(_RULES)),
    re.IGNORECASE,
)


def parse_instruction(instruction: str) -> list[Operation]:
    """The recognised operations of `instruction`, in the order they appear."""
    ops = []
    for match in _PATTERN.finditer(instruction):
        index = next(i for i in range(len(_RULES)) if match.group(f"rule{i}") is not None)
        ops.append(_RULES[index][1](match))
    return ops


class LocalProvider:
    """Deterministic offline provider; `delay_s` simulates provider latency (through the injected clock)."""

    name = "local"
    cpu_bound = True  # Pillow in this process: off the generate pool's event loop (workers/concurrency.py)

    def __init__(self, delay_s: float = 0.0, clock: Clock | None = None, max_long_edge: int = MAX_EDGE) -> None:
        self._delay_s = delay_s
        self._clock = clock or SystemClock()
        self._max_edge = max(1, min(max_long_edge, MAX_EDGE))

    def edit(self, request: EditRequest) -> EditResult:
        if self._delay_s > 0:
            self._clock.sleep(self._delay_s)
        used = request.images[:1] if request.operation == "edit" else request.images
        images = [_decode(img.data, i) for i, img in enumerate(used)]
        ops = parse_instruction(request.instruction)
        if request.operation == "edit":
            if not images:
                raise InvalidProviderRequest("edit needs at least one image")
            if not ops:
                raise NoImageGenerated(
                    "no instruction the local provider understands",
                    suggestion="The local provider understands: " + ", ".join(UNDERSTOOD)
                    + ". Combine several, e.g. 'make it black and white and rotate 90 degrees'.")
            result, done = images[0], []
        elif request.operation == "compose":
            if len(images) < 2:
                raise InvalidProviderRequest(f"compose needs at least 2 images, got {len(images)}")
            result, done = (_side_by_side(images, self._max_edge),
                            [f"side-by-side composition of {len(images)} images"])
        elif request.operation == "style_transfer":
            if len(images) != 2:
                raise InvalidProviderRequest(f"style_transfer needs exactly 2 images, got {len(images)}")
            result, done = _transfer_colour(images[0], images[1]), ["colour transfer from the style image"]
        else:
            raise InvalidProviderRequest(f"unknown operation {request.operation[:40]!r}")
        result, capped = _fit(result, self._max_edge)
        for op in ops:
            result, shrunk = _fit(op.apply(result), self._max_edge)
            capped = capped or shrunk
            done.append(op.label)
        if capped:
            done.append(f"fitted to {self._max_edge} px")
        return EditResult(images=(OutputImage(data=_encode(result), mime_type="image/png"),),
                          text="Applied: " + ", ".join(done))


def _decode(data: bytes, index: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            return im.convert("RGBA" if has_alpha else "RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidProviderRequest(f"input image {index} could not be decoded ({type(exc).__name__})"
                                     ) from exc


def _encode(im: Image.Image) -> bytes:
    im = im.copy()
    im.info = {}  # no ICC/EXIF/text chunks: output bytes depend on pixels only
    out = io.BytesIO()
    im.save(out, "PNG", compress_level=1)  # ~4× faster than the default 6 for ~25 % more bytes
    return out.getvalue()


def _fit(im: Image.Image, max_edge: int) -> tuple[Image.Image, bool]:
    """`im` scaled down (aspect kept) so its long edge is at most `max_edge`; True when it had to shrink."""
    if max(im.size) <= max_edge:
        return im, False
    scale = max_edge / max(im.size)
    size = (max(1, min(max_edge, round(im.width * scale))), max(1, min(max_edge, round(im.height * scale))))
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), True


def _side_by_side(images: Sequence[Image.Image], max_edge: int = MAX_EDGE) -> Image.Image:
    # A common height that keeps the total width within max_edge: never build a canvas only to shrink it.
    height = min(im.height for im in images)
    width = sum(im.width * height / im.height for im in images)
    if width > max_edge:
        height = max(1, int(height * max_edge / width))
    scaled = [im if im.height == height else
              im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.LANCZOS)
              for im in images]
    mode = "RGBA" if any(im.mode == "RGBA" for im in scaled) else "RGB"
    canvas = Image.new(mode, (sum(im.width for im in scaled), height))
    x = 0
    for im in scaled:
        canvas.paste(im.convert(mode), (x, 0))
        x += im.width
    return canvas


def _transfer_colour(content: Image.Image, style: Image.Image) -> Image.Image:
    """Per-channel mean/spread transfer (Reinhard-style, in RGB): content takes on the style's palette."""
    target = ImageStat.Stat(style.convert("RGB"))

    def apply(im: Image.Image) -> Image.Image:
        source = ImageStat.Stat(im)
        bands = []
        for band, mean, std, t_mean, t_std in zip(im.split(), source.mean, source.stddev, target.mean,
                                                   target.stddev, strict=True):
            ratio = min(max(t_std / std, 0.25), 4.0) if std > 0 else 1.0
            lut = [min(255, max(0, round((v - mean) * ratio + t_mean))) for v in range(256)]
            bands.append(band.point(lut))
        return Image.merge("RGB", bands)

    return _rgb(apply)(content)
