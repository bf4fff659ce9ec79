"""The model catalogue: which image models exist, what each accepts, what it costs, and when it retires.

Owns the data file format (`shared/models.toml`, packaged; NANOEDIT_MODELS_FILE replaces it), the typed records
read from it (`ModelSpec`, `Price`, `Catalogue`), option validation against a model (`Catalogue.resolve`,
`check_options`) and the cost estimate of a usage (`estimate_cost_usd`). Pure: no Redis, no network, no env.
"""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from shared.errors import ClientInputError, ConfigError
from shared.jobs.options import JobOptions, Usage
from shared.limiter import ModelLimits
from shared.models import normalize_model_name

PACKAGED_SOURCE = "built-in shared/models.toml"


class CatalogueError(ConfigError):
    """The models file is unreadable or malformed."""


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens by kind, or a flat price per output image by size (replaces the image tokens)."""

    input_per_mtok: float = 0.0
    output_text_per_mtok: float = 0.0
    output_image_per_mtok: float = 0.0
    per_image: Mapping[str, float] = field(default_factory=dict)
    source: str = ""
    as_of: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"input_per_mtok": self.input_per_mtok, "output_text_per_mtok": self.output_text_per_mtok,
                "output_image_per_mtok": self.output_image_per_mtok, "per_image": dict(self.per_image),
                "source": self.source, "as_of": self.as_of}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    display_name: str
    image_sizes: tuple[str, ...] = ()
    aspect_ratios: tuple[str, ...] = ()
    max_reference_images: int = 0
    thinking_levels: tuple[str, ...] = ()
    image_tokens: Mapping[str, int] = field(default_factory=dict)
    price: Price = field(default_factory=Price)
    shutdown_on: dt.date | None = None
    replacement: str = ""
    limits: ModelLimits = field(default_factory=ModelLimits)  # its own caps besides the fleet's (0 = none)

    def retired(self, today: dt.date) -> bool:
        return self.shutdown_on is not None and self.shutdown_on <= today

    def to_dict(self, today: dt.date) -> dict[str, Any]:
        return {"id": self.id, "display_name": self.display_name, "image_sizes": list(self.image_sizes),
                "aspect_ratios": list(self.aspect_ratios), "max_reference_images": self.max_reference_images,
                "thinking_levels": list(self.thinking_levels), "price": self.price.to_dict(),
                "shutdown_on": self.shutdown_on.isoformat() if self.shutdown_on else None,
                "replacement": self.replacement or None, "retired": self.retired(today)}


@dataclass(frozen=True, slots=True)
class Resolved:
    """A requested model after the catalogue: what runs (`model`) and what was asked for (`requested`)."""

    model: ModelSpec
    requested: str


@dataclass(frozen=True, slots=True)
class Catalogue:
    default: str
    models: Mapping[str, ModelSpec]
    source: str = PACKAGED_SOURCE

    def get(self, model_id: str) -> ModelSpec | None:
        return self.models.get(normalize_model_name(model_id))

    def available(self, today: dt.date) -> list[ModelSpec]:
        return [m for m in self.models.values() if not m.retired(today)]

    def resolve(self, requested: str, today: dt.date) -> Resolved:
        """The model a job runs on: the requested one (or the default), a retired one's replacement, or 422."""
        name = normalize_model_name(requested) or self.default
        spec = self.get(name)
        usable = ", ".join(m.id for m in self.available(today))
        if spec is None:
            raise ClientInputError(f"unknown model {name[:60]!r}", code="invalid_option",
                                   suggestion=f"Use one of: {usable} (GET /v1/models lists them).")
        seen = {spec.id}
        while spec.retired(today):
            nxt = self.get(spec.replacement) if spec.replacement else None
            if nxt is None or nxt.id in seen:
                raise ClientInputError(f"model {name!r} was shut down on {spec.shutdown_on} and has no "
                                       "replacement", code="model_retired",
                                       suggestion=f"Use one of: {usable}.")
            seen.add(nxt.id)
            spec = nxt
        return Resolved(model=spec, requested=name)


def check_options(spec: ModelSpec, options: JobOptions, image_count: int) -> None:
    """422 invalid_option (allowed values in the suggestion) when an option is not one `spec` accepts."""
    for name, value, allowed in (("aspect_ratio", options.aspect_ratio, spec.aspect_ratios),
                                 ("image_size", options.image_size, spec.image_sizes),
                                 ("thinking_level", options.thinking_level, spec.thinking_levels)):
        if value and value not in allowed:
            accepted = ", ".join(allowed) or "(none: leave it out)"
            raise ClientInputError(f"{name}={value[:20]!r} is not accepted by {spec.id}", code="invalid_option",
                                   suggestion=f"For {spec.id} use {name} one of: {accepted}.")
    if spec.max_reference_images and image_count > spec.max_reference_images:
        raise ClientInputError(f"{image_count} input images; {spec.id} accepts at most "
                               f"{spec.max_reference_images}", code="too_many_images",
                               suggestion=f"Send at most {spec.max_reference_images} images to {spec.id}.")


def estimate_cost_usd(spec: ModelSpec | None, usage: Usage, images: int, image_size: str) -> float | None:
    """Cost of `usage` at `spec`'s catalogue prices (an estimate: the prices are data); None when unpriced."""
    if spec is None:
        return None
    p = spec.price
    text_out = max(0, usage.output_tokens - usage.output_image_tokens) + usage.thinking_tokens
    cost = usage.prompt_tokens * p.input_per_mtok / 1e6 + text_out * p.output_text_per_mtok / 1e6
    if p.per_image:
        cost += images * p.per_image.get(image_size or "1K", max(p.per_image.values()))
    else:
        cost += usage.output_image_tokens * p.output_image_per_mtok / 1e6
    return round(cost, 6)


def check_configured(models_file: str, default_model: str, today: dt.date) -> Catalogue:
    """Start-up check (build_runtime): the catalogue loads and the configured default model is in it (a retired one
    must have a replacement). Raises CatalogueError, so a bad deploy fails loudly instead of refusing every job."""
    catalogue = load_catalogue(models_file)
    try:
        catalogue.resolve(default_model, today)
    except ClientInputError as exc:
        raise CatalogueError(f"NANOEDIT_GEMINI_MODEL={default_model!r}: {exc.details} ({catalogue.source})",
                             suggestion=exc.suggestion) from None
    return catalogue


# --- loading ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def load_catalogue(path: str = "") -> Catalogue:
    """The catalogue at `path` (NANOEDIT_MODELS_FILE), or the packaged one when empty. Cached per path."""
    try:
        if path:
            text, source = Path(path).read_text("utf-8"), path
        else:
            text, source = resources.files("shared").joinpath("models.toml").read_text("utf-8"), PACKAGED_SOURCE
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"models file {path or PACKAGED_SOURCE}: {exc}",
                             suggestion="Fix NANOEDIT_MODELS_FILE or unset it for the built-in catalogue.") from None
    return parse_catalogue(data, source)


def parse_catalogue(data: Mapping[str, Any], source: str = PACKAGED_SOURCE) -> Catalogue:
    raw_models = data.get("models")
    if not isinstance(raw_models, dict) or not raw_models:
        raise CatalogueError(f"{source}: no [models.*] tables")
    models = {normalize_model_name(k): _spec(normalize_model_name(k), v, source) for k, v in raw_models.items()}
    default = normalize_model_name(str(data.get("default") or ""))
    if default not in models:
        raise CatalogueError(f"{source}: default {default!r} is not a listed model")
    for spec in models.values():
        if spec.replacement and spec.replacement not in models:
            raise CatalogueError(f"{source}: {spec.id} is replaced by unknown model {spec.replacement!r}")
    return Catalogue(default=default, models=models, source=source)


def _limits(raw: Any) -> ModelLimits:
    """`[models.<id>.limits]`: the model's own concurrency, rpm, images_per_min (whole numbers ≥ 0; 0 = none)."""
    if raw is None:
        return ModelLimits()
    if not isinstance(raw, dict):
        raise ValueError("limits must be a table")
    unknown = set(raw) - {"concurrency", "rpm", "images_per_min"}
    if unknown:
        raise ValueError(f"unknown limit(s) {sorted(unknown)}: use concurrency, rpm, images_per_min")
    return ModelLimits(**raw)


def model_limits(catalogue: Catalogue) -> dict[str, ModelLimits]:
    """Each model's own limits for the fleet limiter (only the models that set some)."""
    return {m: spec.limits for m, spec in catalogue.models.items() if spec.limits.any}


def _spec(model_id: str, raw: Any, source: str) -> ModelSpec:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{source}: models.{model_id} must be a table")
    try:
        price = raw.get("price") or {}
        shutdown = raw.get("shutdown_on")
        if isinstance(shutdown, str):
            shutdown = dt.date.fromisoformat(shutdown)
        return ModelSpec(
            id=model_id, display_name=str(raw.get("display_name") or model_id),
            image_sizes=tuple(str(s) for s in raw.get("image_sizes", ())),
            aspect_ratios=tuple(str(s) for s in raw.get("aspect_ratios", ())),
            max_reference_images=int(raw.get("max_reference_images", 0)),
            thinking_levels=tuple(str(s).lower() for s in raw.get("thinking_levels", ())),
            image_tokens={str(k): int(v) for k, v in (raw.get("image_tokens") or {}).items()},
            price=Price(input_per_mtok=float(price.get("input_per_mtok", 0)),
                        output_text_per_mtok=float(price.get("output_text_per_mtok", 0)),
                        output_image_per_mtok=float(price.get("output_image_per_mtok", 0)),
                        per_image={str(k): float(v) for k, v in (price.get("per_image") or {}).items()},
                        source=str(price.get("source", "")), as_of=str(price.get("as_of", ""))),
            shutdown_on=shutdown if isinstance(shutdown, dt.date) else None,
            replacement=normalize_model_name(str(raw.get("replacement") or "")),
            limits=_limits(raw.get("limits")),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise CatalogueError(f"{source}: models.{model_id}: {exc}") from None
