"""Mergeable latency histograms with bounded relative error, kept as Redis hashes of log-bucket counts.

The bucket of a value is DDSketch's logarithmic mapping (the `ddsketch` library's `LogarithmicMapping`, relative
accuracy α = 1 %): every value in a bucket is within α of the bucket's representative value, so any quantile read
from merged buckets is within α of the true sample quantile. Buckets from many processes and many minutes merge
by adding counts (HINCRBY), which is what makes per-minute storage and cross-process reports exact enough —
unlike averaging per-process percentiles, which is simply wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_MIN_VALUE = 1e-4  # seconds; anything faster is recorded as this (0 has no logarithm)
ZERO_BUCKET = "z"


def bucket_of(value_s: float) -> str:
    """The hash field a latency (seconds) is counted under."""
    if not math.isfinite(value_s) or value_s <= _MIN_VALUE:
        return ZERO_BUCKET
    return str(int(_MAPPING.key(value_s)))


def value_of(bucket: str) -> float:
    return _MIN_VALUE if bucket == ZERO_BUCKET else float(_MAPPING.value(int(bucket)))


@dataclass(frozen=True, slots=True)
class Histogram:
    """Merged bucket counts; `quantile(q)` is None below `min_count` samples (a noisy number is worse)."""

    counts: Mapping[str, int]

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    @classmethod
    def merge(cls, parts: Iterable[Mapping[str, str | int]]) -> Histogram:
        total: dict[str, int] = {}
        for part in parts:
            for bucket, n in part.items():
                total[bucket] = total.get(bucket, 0) + int(n)
        return cls(total)

    def quantile(self, q: float, *, min_count: int = 1) -> float | None:
        n = self.count
        if n == 0 or n < min_count:
            return None
        # Same rank rule as DDSketch: the value with rank floor(q·(n−1)) in sorted order.
        rank = math.floor(q * (n - 1))
        seen = 0
        for bucket in sorted(self.counts, key=value_of):
            seen += self.counts[bucket]
            if seen > rank:
                return value_of(bucket)
        return value_of(max(self.counts, key=value_of))

    def mean(self) -> float | None:
        n = self.count
        return None if n == 0 else sum(value_of(b) * c for b, c in self.counts.items()) / n
