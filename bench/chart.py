"""The bench chart: one horizontal bar per figure that has a baseline, its ratio on a log₂ axis around a line
at 1× (right of it, green: nanoedit does better than the baseline; left, red: worse), with the ratio, the value
and the baseline written beside it. Drawn with Pillow (already a runtime dependency) rather than matplotlib: a
bar per figure needs a few rectangles and text, not a plotting stack in the environment.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from bench.figures import Figure

LIMIT = 4  # the axis spans 2^-LIMIT .. 2^LIMIT (1/16× .. 16×); larger ratios are drawn clipped and say so
ROW, LABEL_W, AXIS_W, TEXT_W, TOP = 26, 400, 560, 330, 86
GREEN, RED, GREY, INK = (46, 139, 87), (200, 60, 50), (150, 150, 150), (20, 20, 20)


# Pillow's built-in font has no ×, ≥, ≤, —, →: spell them in ASCII so no label shows a missing-glyph box.
_ASCII = str.maketrans({"×": "x", "≥": ">=", "≤": "<=", "—": "-", "→": "->", "▸": ">", "≈": "~"})


def _t(text: str) -> str:
    return text.translate(_ASCII)


def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"


def render(figures: list[Figure], machine: dict[str, Any], path: Path, *, quick: bool = False) -> None:
    rows = [f for f in figures if f.ratio is not None and f.ratio > 0]
    others = [f for f in figures if f not in rows]
    height = TOP + ROW * (len(rows) + 1) + 22 * (len(others) + 3) + 20
    width = LABEL_W + AXIS_W + TEXT_W
    im = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(im)
    font, small, big = (ImageFont.load_default(size=s) for s in (14, 12, 18))
    mode = "quick run" if quick else "full run"
    d.text((12, 10), f"nanoedit bench - ratio to baseline (> 1x = nanoedit better), {mode}", fill=INK, font=big)
    dirty = " (dirty)" if machine.get("git_dirty") else ""
    d.text((12, 36), _t(f"{machine.get('cpu_model', '')}, {machine.get('cores')} cores, {machine.get('ram_gb')} GB; "
                     f"python {machine.get('python')}; {machine.get('date')}; "
                     f"commit {str(machine.get('git_commit', ''))[:10]}{dirty}"), fill=GREY, font=small)

    def x_of(ratio: float) -> float:
        return LABEL_W + AXIS_W / 2 + max(-LIMIT, min(LIMIT, math.log2(ratio))) / LIMIT * (AXIS_W / 2 - 10)

    axis_bottom = TOP + ROW * len(rows)
    for k in range(-LIMIT, LIMIT + 1):
        x = x_of(2.0 ** k)
        d.line([(x, TOP - 8), (x, axis_bottom)], fill=INK if k == 0 else (225, 225, 225), width=2 if k == 0 else 1)
        label = f"{2 ** k:g}x" if k >= 0 else f"1/{2 ** -k}x"
        d.text((x, TOP - 10), label, fill=GREY, font=small, anchor="mb")
    for i, f in enumerate(rows):
        assert f.ratio is not None
        y = TOP + i * ROW
        d.text((LABEL_W - 8, y + ROW / 2), _t(f"{f.scenario} · {f.name}"), fill=INK, font=font, anchor="rm")
        x0, x1 = x_of(1.0), x_of(f.ratio)
        colour = GREEN if f.ratio >= 1 else RED
        d.rectangle([min(x0, x1), y + 5, max(x0, x1), y + ROW - 5], fill=colour)
        clipped = abs(math.log2(f.ratio)) > LIMIT
        invalid = " INVALID" if f.notes.startswith("INVALID") else ""
        d.text((LABEL_W + AXIS_W + 8, y + ROW / 2),
               _t(f"{f.ratio:.2f}x{' (clipped)' if clipped else ''}  {_fmt(f.value)} vs {_fmt(f.baseline)} "
                  f"{f.unit}{invalid}"),
               fill=RED if invalid else INK, font=small, anchor="lm")
    y = axis_bottom + ROW
    if others:
        d.text((12, y), "Figures without a ratio (no baseline, or a zero to divide by):", fill=INK, font=font)
        for f in others:
            y += 22
            base = "" if f.baseline is None else f" vs {_fmt(f.baseline)} {f.unit} ({f.baseline_name})"
            d.text((24, y), _t(f"{f.scenario} · {f.name}: {_fmt(f.value)} {f.unit}{base}   target: {f.target or '-'}"),
                   fill=INK, font=small)
    d.text((12, height - 22), "measured and drawn by `make bench` (bench/suite.py); figures in "
                              "bench/results/latest.json", fill=GREY, font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "PNG", optimize=True)
