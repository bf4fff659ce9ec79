"""The job's inputs as records: what intake accepted (`InputMeta`), which earlier output an input came from
(`ParentRef`), and what preprocessing made of it (`PreparedInput`). Part of the job record (shared.jobs.model
re-exports them); pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class InputMeta:
    """An input image as accepted at intake."""

    index: int
    mime_type: str
    bytes: int
    width: int
    height: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "mime_type": self.mime_type, "bytes": self.bytes,
                "width": self.width, "height": self.height, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputMeta:
        return cls(int(d["index"]), str(d["mime_type"]), int(d["bytes"]), int(d["width"]),
                   int(d["height"]), str(d["sha256"]))


@dataclass(frozen=True, slots=True)
class ParentRef:
    """An input taken from an earlier job's output (an edit of a previous result): the job's lineage."""

    job_id: str
    output: int

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "output": self.output}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParentRef:
        return cls(job_id=str(d["job_id"]), output=int(d["output"]))


@dataclass(frozen=True, slots=True)
class PreparedInput:
    """An input after preprocessing (oriented, sRGB, bounded), as sent to the provider."""

    index: int
    mime_type: str
    width: int
    height: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "mime_type": self.mime_type, "width": self.width, "height": self.height,
                "bytes": self.bytes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreparedInput:
        return cls(index=int(d["index"]), mime_type=str(d.get("mime_type") or "image/png"),
                   width=int(d.get("width") or 0), height=int(d.get("height") or 0), bytes=int(d.get("bytes") or 0))
