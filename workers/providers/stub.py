"""The in-package stub of `Provider` for tests: plays a script of outcomes and records every request.

Each call takes the next outcome: "ok" (or an exhausted script) returns `image` with text "done"; a
`ProviderError` instance is raised. `during_call`, when set, runs inside the call (e.g. to cancel mid-flight).
"""

from __future__ import annotations

from collections.abc import Callable

from workers.providers.base import EditRequest, EditResult, OutputImage, ProviderError


class ScriptedProvider:
    name = "stub"
    cpu_bound = False

    def __init__(self, *outcomes: str | ProviderError, image: bytes = b"", mime_type: str = "image/png") -> None:
        self.outcomes: list[str | ProviderError] = list(outcomes)
        self.calls: list[EditRequest] = []
        self.during_call: Callable[[], object] | None = None
        self._image = OutputImage(image, mime_type)

    def edit(self, request: EditRequest) -> EditResult:
        self.calls.append(request)
        if self.during_call:
            self.during_call()
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if isinstance(outcome, ProviderError):
            raise outcome
        return EditResult(images=(self._image,), text="done")
