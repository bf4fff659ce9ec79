"""Retry delays: exponential backoff with full jitter, capped, honouring a provider's retry hint.

Hand-written rather than `stamina`/`tenacity`: those retry in-process by sleeping, while our long waits must
go back to the queue as a countdown (docs/architecture.md, "Celery reliability settings"), so we only need the
delay arithmetic.
"""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base_s: float = 1.0, cap_s: float = 60.0, hint_s: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1 = first retry): full jitter in [0, min(cap, base·2^(n-1))],
    not below the provider's hint (RetryInfo.retryDelay) unless that exceeds the cap, and never above the cap."""
    rng = rng or random.Random()
    ceiling = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    delay = rng.uniform(0, ceiling)
    if hint_s is not None:
        delay = max(delay, hint_s)
    # Never past the cap, even for a longer hint: the visibility timeout is sized from the cap, and a 429's
    # hint is enforced fleet-wide by the limiter's cooldown anyway (an early task just waits for quota).
    return min(delay, cap_s)
