"""Whether the configured Gemini models exist at the API: the last start-up check's result, kept in Redis.

Owns the key `{prefix}:models:availability` (JSON of `ModelAvailability`). Written by the worker's start-up check
(workers/model_check.py: the only place that calls the API's model list, since the web process never imports
google-genai); read by /readyz?detailed=true (an informational check: a missing model never fails readiness,
the jobs that name it fail with model_unavailable) and by the health report (`models.missing`, which the
default alert rule `model_missing` watches).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import redis

from shared.catalogue import Catalogue

TTL_S = 7 * 86400


@dataclass(frozen=True, slots=True)
class ModelAvailability:
    checked_at: float
    configured: tuple[str, ...]
    missing: tuple[str, ...] = ()
    error: str = ""  # the check could not run (network, auth): nothing is known to be missing

    def to_dict(self) -> dict[str, object]:
        return {"checked_at": self.checked_at, "configured": list(self.configured), "missing": list(self.missing),
                "error": self.error or None}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> ModelAvailability:
        def strings(v: object) -> tuple[str, ...]:
            return tuple(str(x) for x in v) if isinstance(v, list) else ()

        checked = d.get("checked_at")
        return cls(checked_at=float(checked) if isinstance(checked, int | float) else 0.0,
                   configured=strings(d.get("configured")), missing=strings(d.get("missing")),
                   error=str(d.get("error") or ""))


def configured_models(catalogue: Catalogue, default_model: str, today: dt.date) -> tuple[str, ...]:
    """What this deployment may call: the default (a retired one's replacement) and every current model."""
    first = catalogue.resolve(default_model, today).model.id
    return (first, *(m.id for m in catalogue.available(today) if m.id != first))


def _key(prefix: str) -> str:
    return f"{prefix}:models:availability"


def save(r: redis.Redis, prefix: str, result: ModelAvailability) -> None:
    r.set(_key(prefix), json.dumps(result.to_dict()), ex=TTL_S)


def load(r: redis.Redis, prefix: str) -> ModelAvailability | None:
    raw = r.get(_key(prefix))
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return ModelAvailability.from_dict(data) if isinstance(data, dict) else None


def readiness_check(r: redis.Redis, prefix: str) -> dict[str, object]:
    """The /readyz?detailed=true entry: always ok (informational), with what the last check found."""
    found = load(r, prefix)
    if found is None:
        return {"ok": True, "informational": True, "checked": False}
    return {"ok": True, "informational": True, "checked": True, **found.to_dict()}
