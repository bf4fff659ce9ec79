"""When Google's per-day quotas reset: midnight in America/Los_Angeles (docs/providers.md#429-kinds).

Pure functions of an epoch time (callers pass `Clock.now()`), so tests pin any instant, DST changes included.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")


def next_pacific_midnight(now: float) -> float:
    """The epoch second of the first midnight in America/Los_Angeles strictly after `now`."""
    local = datetime.fromtimestamp(now, UTC).astimezone(PACIFIC)
    tomorrow = local.date() + timedelta(days=1)
    # Build the wall-clock midnight in the zone (not local + 24 h), so a 23 h or 25 h day is handled.
    return datetime.combine(tomorrow, time(0), tzinfo=PACIFIC).timestamp()


def seconds_until_pacific_midnight(now: float) -> float:
    return next_pacific_midnight(now) - now
