"""The record every bench scenario returns: one measured figure next to the baseline measured in the same run.

`ratio` is oriented so that > 1 always means "nanoedit does better than the baseline": value ÷ baseline for a
figure where higher is better (throughput), baseline ÷ value where lower is better (latency, memory). It is
computed here from the two measured numbers, never typed in; it is None when there is no baseline or a
division by zero would be needed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

Better = Literal["higher", "lower"]


@dataclass(frozen=True, slots=True)
class Figure:
    scenario: str
    name: str
    unit: str
    value: float
    baseline: float | None
    ratio: float | None
    better: Better
    baseline_name: str = ""  # what the baseline is ("naive Flask app", "100 jobs waiting", ...)
    target: str = ""  # the target, as text
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Figure:
        """The inverse of `to_dict` (a value written as null, NaN measured, reads back as NaN)."""
        return cls(**{**d, "value": float("nan") if d["value"] is None else float(d["value"])})


def ratio_of(value: float, baseline: float | None, better: Better) -> float | None:
    if baseline is None or not (math.isfinite(value) and math.isfinite(baseline)):
        return None
    num, den = (value, baseline) if better == "higher" else (baseline, value)
    return num / den if den > 0 else None


def figure(scenario: str, name: str, unit: str, value: float, baseline: float | None, better: Better, *,
           baseline_name: str = "", target: str = "", notes: str = "") -> Figure:
    return Figure(scenario=scenario, name=name, unit=unit, value=value, baseline=baseline,
                  ratio=ratio_of(value, baseline, better), better=better, baseline_name=baseline_name,
                  target=target, notes=notes)


class Scenario(Protocol):
    """One entry of `make bench`: `run(quick)` starts what it needs, stops it again, and returns its figures.
    `skip_reason()` says why it cannot run on this machine ("" = it can), e.g. a missing `wrk`. `in_quick_run`:
    whether `--quick` runs it without being named in `--only` (False for those too slow for the 2-minute run)."""

    name: str
    description: str
    in_quick_run: bool

    def skip_reason(self) -> str: ...

    def run(self, quick: bool) -> list[Figure]: ...


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
