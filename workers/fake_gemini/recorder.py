"""What the fake saw: a thread-safe log of every request plus in-flight accounting.

Tests and load-test operators read it through `GET /_fake/requests` and `GET /_fake/stats`. A record never holds
an API key: only whether one was sent and a short SHA-256 prefix, enough to tell two keys apart. Image bytes are
not kept either, only (mime type, length, sha256), so a long load test does not grow memory with payloads.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from shared.clock import Clock, SystemClock
from workers.fake_gemini.wire import InlineImage

DEFAULT_MAX_RECORDS = 10_000
CLIENT_CLOSED = 499  # recorded status when the client hung up before we answered (nginx's convention)


def key_fingerprint(api_key: str) -> str:
    """First 12 hex chars of the key's SHA-256: distinguishes keys without revealing one."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12] if api_key else ""


@dataclass(frozen=True, slots=True)
class ImageRecord:
    mime_type: str
    bytes: int
    sha256: str

    @classmethod
    def of(cls, image: InlineImage) -> ImageRecord:
        return cls(image.mime_type, len(image.data), hashlib.sha256(image.data).hexdigest())


@dataclass(slots=True)
class RequestRecord:
    """One request; `status`/`duration_ms` stay None while it is in flight."""

    id: int
    at: float
    method: str
    path: str
    model: str = ""
    api_version: str = ""
    api_key_present: bool = False
    api_key_sha256: str = ""
    scenario: str = ""
    prompt: str = ""
    images: tuple[ImageRecord, ...] = ()
    response_modalities: tuple[str, ...] = ()
    generation_config: dict[str, Any] = field(default_factory=dict)  # as sent on the wire (camelCase)
    server_timeout_s: str = ""  # the SDK's X-Server-Timeout header: the client's own deadline
    status: int | None = None
    duration_ms: float | None = None
    _started: float = field(default=0.0, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "at": self.at, "method": self.method, "path": self.path, "model": self.model,
            "api_version": self.api_version, "api_key_present": self.api_key_present,
            "api_key_sha256": self.api_key_sha256, "scenario": self.scenario, "prompt": self.prompt,
            "images": [{"mime_type": i.mime_type, "bytes": i.bytes, "sha256": i.sha256} for i in self.images],
            "response_modalities": list(self.response_modalities), "generation_config": self.generation_config,
            "server_timeout_s": self.server_timeout_s, "status": self.status, "duration_ms": self.duration_ms,
        }


class Recorder:
    """Request log and in-flight counters; every method is safe to call from any handler thread."""

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()  # `at` is wall time, durations are monotonic
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._next_id = 1
        self._count = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._by_status: Counter[str] = Counter()

    def begin(self, method: str, path: str) -> RequestRecord:
        """Start a record and count the request as in flight; pair with `finish`."""
        with self._lock:
            record = RequestRecord(id=self._next_id, at=self._clock.now(), method=method, path=path,
                                   _started=self._clock.monotonic())
            self._next_id += 1
            self._count += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._records.append(record)
            return record

    def annotate(self, record: RequestRecord, **changes: Any) -> None:
        """Fill in what was learnt about a request (model, prompt, images...) once it is decoded."""
        with self._lock:
            for name, value in changes.items():
                setattr(record, name, value)

    def finish(self, record: RequestRecord, status: int) -> None:
        with self._lock:
            record.status = status
            record.duration_ms = round((self._clock.monotonic() - record._started) * 1000, 3)
            self._in_flight -= 1
            self._by_status[str(status)] += 1

    def restatus(self, record: RequestRecord, status: int) -> None:
        """Correct a finished record's status (the answer could not be delivered after all)."""
        with self._lock:
            if record.status is not None:
                self._by_status[str(record.status)] -= 1
                self._by_status += Counter()  # drop zero counts
            record.status = status
            self._by_status[str(status)] += 1

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_dict() for r in self._records]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"count": self._count, "in_flight": self._in_flight, "max_in_flight": self._max_in_flight,
                    "by_status": dict(sorted(self._by_status.items()))}

    def reset(self) -> None:
        """Forget history; requests still in flight stay counted so in_flight never goes negative."""
        with self._lock:
            self._records.clear()
            self._count = 0
            self._max_in_flight = self._in_flight
            self._by_status.clear()
