"""Test clocks beyond `shared.clock.FakeClock`: one that also hands every sleep to the test."""

from __future__ import annotations

from collections.abc import Callable

from shared.clock import FakeClock


class HookedClock(FakeClock):
    """A `FakeClock` whose `sleep` also calls `on_sleep(seconds)`: record it, block on a barrier, or move the
    world along (a job finishing while a client polls)."""

    def __init__(self, on_sleep: Callable[[float], object], start: float = 1_700_000_000.0) -> None:
        super().__init__(start)
        self.on_sleep = on_sleep

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.on_sleep(seconds)
