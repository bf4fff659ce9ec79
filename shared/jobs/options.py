"""A job's generation options and a provider call's token usage: typed frozen records, pure.

`JobOptions` is what the client chose (validated at intake against the model catalogue, `shared.catalogue`);
`Usage` is what the provider reported for one call (`usageMetadata`), summed over a job's attempts by `Usage.sum`.
Both are stored as JSON inside the job record (`shared.jobs.store`) and read back with `from_dict`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

OUTPUT_FORMATS = ("png", "jpeg", "webp")


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-job options; "" = not set (the model's own default applies)."""

    aspect_ratio: str = ""
    image_size: str = ""
    thinking_level: str = ""
    output_format: str = ""  # png | jpeg | webp: converted in the worker; "" = the provider's bytes untouched
    quality: int = 0  # jpeg/webp quality 1..100; 0 = the default (90)

    def to_dict(self) -> dict[str, Any]:
        return {"aspect_ratio": self.aspect_ratio or None, "image_size": self.image_size or None,
                "thinking_level": self.thinking_level or None, "output_format": self.output_format or None,
                "quality": self.quality or None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobOptions:
        return cls(aspect_ratio=str(d.get("aspect_ratio") or ""), image_size=str(d.get("image_size") or ""),
                   thinking_level=str(d.get("thinking_level") or ""), output_format=str(d.get("output_format") or ""),
                   quality=int(d.get("quality") or 0))


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one provider call as the API reports them (GenerateContentResponseUsageMetadata):
    `prompt_tokens` = prompt_token_count (of which `prompt_image_tokens` by the IMAGE modality),
    `output_tokens` = candidates_token_count (of which `output_image_tokens` IMAGE), `thinking_tokens` =
    thoughts_token_count, `total_tokens` = total_token_count."""

    prompt_tokens: int = 0
    prompt_image_tokens: int = 0
    output_tokens: int = 0
    output_image_tokens: int = 0
    thinking_tokens: int = 0
    total_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "prompt_image_tokens": self.prompt_image_tokens,
                "output_tokens": self.output_tokens, "output_image_tokens": self.output_image_tokens,
                "thinking_tokens": self.thinking_tokens, "total_tokens": self.total_tokens}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Usage:
        return cls(**{name: int(d.get(name) or 0) for name in cls.__dataclass_fields__})

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in Usage.__dataclass_fields__})

    @property
    def empty(self) -> bool:
        return not any(getattr(self, name) for name in Usage.__dataclass_fields__)

    @staticmethod
    def sum(usages: Iterable[Usage | None]) -> Usage:
        total = Usage()
        for u in usages:
            if u is not None:
                total = total + u
        return total
