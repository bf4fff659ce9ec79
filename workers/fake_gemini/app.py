"""The fake Gemini API's request pipeline, independent of the HTTP transport.

`FakeGemini.handle` routes one request and answers it through a `send` callback:

- `POST /{v1beta|v1|v1alpha}/models/{model}:generateContent`: key check → body decode → scenario lookup →
  model check → rpm window → simulated latency → random transient error / hang → scenario.
- `GET /_fake/requests`, `GET /_fake/stats`, `GET /_fake/config`, `GET /_fake/scenarios`, `POST /_fake/reset`,
  `POST /_fake/config`: the control plane for tests and load-test operators (not recorded, not counted).

Key handling follows the real API: no key at all → 403 PERMISSION_DENIED ("unregistered callers"), a present
but wrong key → 400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID. The API never answers 401 for a
key problem, so neither do we. The key may come in `x-goog-api-key` (what the SDK sends) or `?key=`.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.clock import Clock
from workers.fake_gemini import models, wire
from workers.fake_gemini.config import FakeConfigError, FakeGeminiConfig
from workers.fake_gemini.pacing import LatencyModel, RateWindow, hang
from workers.fake_gemini.recorder import (
    CLIENT_CLOSED,
    ImageRecord,
    Recorder,
    RequestRecord,
    key_fingerprint,
)
from workers.fake_gemini.scenarios import SCENARIOS, ScenarioContext, scenario_names
from workers.fake_gemini.wire import Reply

SCENARIO_HEADER = "x-fake-scenario"
_LIST_MODELS = re.compile(r"^/(?P<version>v1beta|v1alpha|v1)/models/?$")
_GENERATE = re.compile(r"^/(?P<version>v1beta|v1alpha|v1)/models/(?P<model>[^/:]+):generateContent$")

Send = Callable[[Reply], bool]  # writes a reply; False when the client is gone


class FakeGemini:
    """State (config, request log, rpm window, RNG) and routing of one fake API instance."""

    def __init__(self, config: FakeGeminiConfig | None = None, *, clock: Clock,
                 stopping: threading.Event) -> None:
        self._config = config or FakeGeminiConfig()
        _check_scenario(self._config.scenario)
        self._config_lock = threading.Lock()
        self._rng = random.Random(self._config.seed)
        self._clock = clock
        self._stopping = stopping
        self.recorder = Recorder(clock=clock)
        self.window = RateWindow(clock)

    @property
    def config(self) -> FakeGeminiConfig:
        return self._config

    def configure(self, changes: Mapping[str, Any]) -> FakeGeminiConfig:
        """Apply a partial config change atomically; a new `seed` reseeds the RNG."""
        if "scenario" in changes:
            _check_scenario(changes["scenario"])
        with self._config_lock:
            new = self._config.updated(changes)
            if "seed" in changes:
                self._rng.seed(new.seed)
            self._config = new
            return new

    def reset(self) -> None:
        self.recorder.reset()
        self.window.reset()

    # --- routing ----------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes, send: Send,
               client_gone: Callable[[], bool]) -> None:
        """Answer one request; `headers` keys are lower-case."""
        split = urlsplit(target)
        path = split.path
        if path.startswith("/_fake/"):
            send(self._control(method, path, body))
            return
        if method == "GET" and _LIST_MODELS.match(path):
            key = headers.get("x-goog-api-key", "") or parse_qs(split.query).get("key", [""])[0]
            config = self.config
            if not key:
                send(wire.missing_key())
            elif config.api_keys and key not in config.api_keys:
                send(wire.invalid_key())
            else:
                send(models.model_list(config.known_models or models.current_models()))
            return
        match = _GENERATE.match(path)
        if match is None:
            send(wire.route_not_found(path))
            return
        if method != "POST":
            send(wire.api_error(405, "UNIMPLEMENTED", f"Method {method} is not allowed on {path}."))
            return
        query_key = parse_qs(split.query).get("key", [""])[0]
        record = self.recorder.begin(method, path)
        reply: Reply | None = None
        try:
            reply = self._generate(record, match["version"], match["model"], headers, query_key, body,
                                   client_gone)
        finally:
            # Finish before writing, so a client that has its answer also sees it in /_fake/stats.
            self.recorder.finish(record, reply.status if reply is not None else CLIENT_CLOSED)
        if reply is not None and not send(reply):
            self.recorder.restatus(record, CLIENT_CLOSED)

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_fake/requests"):
            return wire.json_reply(200, {"requests": self.recorder.requests()})
        if route == ("GET", "/_fake/stats"):
            return wire.json_reply(200, self.recorder.stats())
        if route == ("GET", "/_fake/config"):
            return wire.json_reply(200, self.config.as_dict())
        if route == ("GET", "/_fake/scenarios"):
            return wire.json_reply(200, {"scenarios": scenario_names()})
        if route == ("POST", "/_fake/reset"):
            self.reset()
            return wire.json_reply(200, {"reset": True})
        if route == ("POST", "/_fake/config"):
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise FakeConfigError("expected a JSON object of config fields")
                return wire.json_reply(200, self.configure(changes).as_dict())
            except (json.JSONDecodeError, UnicodeDecodeError, FakeConfigError) as exc:
                return wire.api_error(400, "INVALID_ARGUMENT", str(exc))
        return wire.route_not_found(path)

    # --- generateContent --------------------------------------------------------------------------------

    def _wait_fn(self, client_gone: Callable[[], bool]) -> Callable[[float], bool]:
        def give_up() -> bool:
            return self._stopping.is_set() or client_gone()

        return lambda seconds: hang(seconds, self._clock, give_up)

    def _generate(self, record: RequestRecord, version: str, model: str, headers: Mapping[str, str],
                  query_key: str, body: bytes, client_gone: Callable[[], bool]) -> Reply | None:
        config = self.config  # one snapshot for the whole request
        key = headers.get("x-goog-api-key", "") or query_key
        self.recorder.annotate(record, model=model, api_version=version, api_key_present=bool(key),
                               api_key_sha256=key_fingerprint(key),
                               server_timeout_s=headers.get("x-server-timeout", ""))
        if not key:
            return wire.missing_key()
        if config.api_keys and key not in config.api_keys:
            return wire.invalid_key()
        try:
            request = wire.parse_generate_request(body)
        except wire.WireError as exc:
            return exc.reply
        name = headers.get(SCENARIO_HEADER, "").strip() or config.scenario
        self.recorder.annotate(record, scenario=name, prompt=request.prompt,
                               images=tuple(ImageRecord.of(i) for i in request.images),
                               response_modalities=request.response_modalities,
                               generation_config=dict(request.generation_config))
        run = SCENARIOS.get(name)
        if run is None:
            return wire.api_error(400, "INVALID_ARGUMENT",
                                  f"Unknown fake scenario {name!r}; known: {', '.join(scenario_names())}.")
        if config.known_models and model not in config.known_models:
            return wire.model_not_found(model, version)
        refused = models.check_request(model, request)
        if refused is not None:
            return refused
        retry_after = self.window.admit(config.rpm)
        if retry_after is not None:
            return wire.rate_limited(model, retry_after_s=math.ceil(retry_after), limit=config.rpm)
        wait = self._wait_fn(client_gone)
        latency_ms = LatencyModel(config.latency_ms_mean, config.latency_ms_p99).sample_ms(self._rng)
        if latency_ms > 0 and not wait(latency_ms / 1000):
            return None
        ctx = ScenarioContext(model=model, api_version=version, request=request, config=config,
                              rng=self._rng, wait=wait)
        draw = self._rng.random()
        if draw < config.timeout_rate:
            return SCENARIOS["hang"](ctx)
        if draw < config.timeout_rate + config.error_rate:
            return self._rng.choice((wire.internal, wire.overloaded))()
        return run(ctx)


def _check_scenario(name: object) -> None:
    if name not in SCENARIOS:
        raise FakeConfigError(f"unknown scenario {name!r}; known: {', '.join(scenario_names())}")
