"""A fake Gemini image API on a local port, for tests and load tests (`python -m workers.fake_gemini`).

It speaks the wire format the google-genai SDK sends and parses (`POST /{version}/models/{model}:
generateContent`, `x-goog-api-key`), answers with real-shaped successes and errors chosen by scenario
(`scenarios`), simulates latency, transient errors, hangs and a per-minute quota (`config`, `pacing`), and
records what it saw without keeping keys (`recorder`). It must not import anything from the service itself:
it stands in for Google, not for us.

Modules: `config` (what to do), `wire` (bodies in and out), `scenarios` (named behaviours), `pacing` (time),
`recorder` (what was seen), `app` (the pipeline), `server` (HTTP + lifecycle), `cli` (command line).
"""

from __future__ import annotations

from workers.fake_gemini.config import DEFAULT_MODELS, FakeConfigError, FakeGeminiConfig
from workers.fake_gemini.scenarios import SCENARIOS, ScenarioContext, scenario, scenario_names
from workers.fake_gemini.server import FakeGeminiServer

__all__ = [
    "DEFAULT_MODELS",
    "SCENARIOS",
    "FakeConfigError",
    "FakeGeminiConfig",
    "FakeGeminiServer",
    "ScenarioContext",
    "scenario",
    "scenario_names",
]
