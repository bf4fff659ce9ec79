"""What the fake Gemini server is told to do: one frozen `FakeGeminiConfig` value.

The config is plain data (JSON in, JSON out) so the CLI, `POST /_fake/config` and tests all set it the same
way. The running server swaps the whole value atomically; nothing mutates a config in place. This module knows
nothing about HTTP or scenarios beyond their names being strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from shared.errors import ConfigError

# The GA image models (shared/models.toml); the retired ones (gemini-2.5-flash-image, -preview) answer 404.
DEFAULT_MODELS: tuple[str, ...] = (
    "gemini-3.1-flash-image",
    "gemini-3-pro-image",
    "gemini-3.1-flash-lite-image",
)


class FakeConfigError(ConfigError):
    """A config change is malformed (unknown field, wrong type, out of range)."""


@dataclass(frozen=True, slots=True)
class FakeGeminiConfig:
    """Behaviour of the fake; every field can be changed at run time through `POST /_fake/config`.

    - `scenario`: the default scenario name (see `scenarios.SCENARIOS`); a request may override it with the
      `x-fake-scenario` header.
    - `latency_ms_mean` / `latency_ms_p99`: simulated processing time, lognormal with that mean and 99th
      percentile (0 = answer at once; p99 ≤ mean = constant latency).
    - `error_rate`: probability of a transient 500 INTERNAL / 503 UNAVAILABLE instead of the scenario.
    - `timeout_rate`: probability of hanging `hang_s` seconds (until the client gives up) instead.
    - `rpm`: admitted requests per rolling minute, 0 = unlimited; over it → 429 RESOURCE_EXHAUSTED + RetryInfo.
    - `known_models`: models that exist; anything else → 404 NOT_FOUND (empty = every model exists).
    - `api_keys`: keys that are valid (empty = any non-empty key); others → 400 API_KEY_INVALID.
    - `slow_ms`: latency of the `slow` scenario.
    - `seed`: seeds the RNG used for latency, error and timeout draws (None = nondeterministic).
    """

    scenario: str = "ok"
    latency_ms_mean: float = 0.0
    latency_ms_p99: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    hang_s: float = 300.0
    rpm: int = 0
    known_models: tuple[str, ...] = DEFAULT_MODELS
    api_keys: tuple[str, ...] = ()
    slow_ms: float = 5000.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "timeout_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FakeConfigError(f"{name}={value} must be within 0..1")
        for name in ("latency_ms_mean", "latency_ms_p99", "hang_s", "slow_ms", "rpm"):
            if getattr(self, name) < 0:
                raise FakeConfigError(f"{name} must not be negative")
        if not self.scenario:
            raise FakeConfigError("scenario must not be empty")

    def updated(self, changes: Mapping[str, Any]) -> FakeGeminiConfig:
        """A copy with `changes` (JSON-ish values) applied; unknown fields or wrong types raise."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise FakeConfigError(f"unknown config field(s): {', '.join(unknown)}")
        coerced: dict[str, Any] = {}
        for name, value in changes.items():
            coerced[name] = _coerce(name, value, getattr(self, name))
        try:
            return replace(self, **coerced)
        except TypeError as exc:  # pragma: no cover - _coerce already checked types
            raise FakeConfigError(str(exc)) from None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (tuples become lists); never contains the valid keys themselves."""
        data = asdict(self)
        data["known_models"] = list(self.known_models)
        data["api_keys"] = len(self.api_keys)  # a count: keys are secrets even in a fake
        return data


def _coerce(name: str, value: Any, current: Any) -> Any:
    """Check one JSON value against the type of the field it replaces."""
    if name in ("known_models", "api_keys"):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise FakeConfigError(f"{name} must be a list of strings")
        return tuple(value)
    if name == "seed":
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise FakeConfigError("seed must be an integer or null")
        return value
    if isinstance(current, str):
        if not isinstance(value, str):
            raise FakeConfigError(f"{name} must be a string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FakeConfigError(f"{name} must be a number")
    if isinstance(current, int):
        if value != int(value):
            raise FakeConfigError(f"{name} must be an integer")
        return int(value)
    return float(value)
