"""Time in the fake: simulated latency, the requests-per-minute window and interruptible hangs.

Nothing here reads or waits on time directly: sleeps go through an injected `shared.clock.Clock` (the server's
default clock returns early from `sleep` when the server stops) and the rpm window reads its `monotonic()`, so
tests drive time with a `FakeClock` without waiting for it.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from shared.clock import Clock, SystemClock

_Z99 = 2.3263478740408408  # standard normal quantile at 0.99


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Lognormal latency with a given mean and 99th percentile (both in ms).

    For a lognormal, mean = exp(mu + s²/2) and p99 = exp(mu + z·s), so s solves s²/2 − z·s + ln(p99/mean) = 0;
    we take the smaller root. A p99 more than e^(z²/2) ≈ 15× the mean is unreachable and is clamped to the
    widest shape (s = z); p99 ≤ mean means a constant latency.
    """

    mean_ms: float
    p99_ms: float

    def shape(self) -> tuple[float, float]:
        """(mu, sigma) of the underlying normal."""
        if self.mean_ms <= 0:
            return (-math.inf, 0.0)
        if self.p99_ms <= self.mean_ms:
            return (math.log(self.mean_ms), 0.0)
        gap = math.log(self.p99_ms / self.mean_ms)
        disc = _Z99 * _Z99 - 2 * gap
        sigma = _Z99 - math.sqrt(disc) if disc > 0 else _Z99
        return (math.log(self.mean_ms) - sigma * sigma / 2, sigma)

    def sample_ms(self, rng: random.Random) -> float:
        mu, sigma = self.shape()
        if mu == -math.inf:
            return 0.0
        if sigma == 0.0:
            return self.mean_ms
        return rng.lognormvariate(mu, sigma)


class RateWindow:
    """Admitted requests in a rolling window (a minute by default); thread-safe."""

    def __init__(self, clock: Clock | None = None, window_s: float = 60.0) -> None:
        self._clock = clock or SystemClock()
        self._window_s = window_s
        self._lock = threading.Lock()
        self._admitted: deque[float] = deque()

    def admit(self, limit: int) -> float | None:
        """Admit one request under `limit` per window: None when admitted, else seconds until a slot frees.

        `limit` ≤ 0 admits everything (and records nothing)."""
        if limit <= 0:
            return None
        with self._lock:
            now = self._clock.monotonic()
            while self._admitted and self._admitted[0] <= now - self._window_s:
                self._admitted.popleft()
            if len(self._admitted) >= limit:
                return max(0.001, self._admitted[len(self._admitted) - limit] + self._window_s - now)
            self._admitted.append(now)
            return None

    def reset(self) -> None:
        with self._lock:
            self._admitted.clear()


def hang(total_s: float, clock: Clock, give_up: Callable[[], bool], slice_s: float = 0.05) -> bool:
    """Wait `total_s` in small slices of `clock.sleep`, stopping early when `give_up()` says so (server
    stopping, client gone).

    Elapsed time is the sum of the slices, not a clock reading, so a clock whose sleep returns early works too.
    Returns True when the full time passed, False when it gave up early."""
    waited = 0.0
    while waited < total_s:
        if give_up():
            return False
        step = min(slice_s, total_s - waited)
        clock.sleep(step)
        waited += step
    return not give_up()
