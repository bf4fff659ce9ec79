"""The start-up model check: are the configured models in the API's model list? Never blocks start-up.

With the gemini provider, once per worker instance (Celery's `worker_ready`, in a daemon thread with the SDK
timeout NANOEDIT_GEMINI_TIMEOUT_S capped at 15 s), the SDK's `models.list()` is called against
NANOEDIT_GEMINI_BASE_URL. Each configured model (shared/model_availability.py: the default and every current
catalogue model) that is not listed is logged at ERROR, stored for /readyz?detailed=true and the health report
(`models.missing`, alert rule `model_missing`). A failed check (network, key) is logged as a warning and stored
as an error: nothing is reported missing on no evidence.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import redis

from shared.catalogue import load_catalogue
from shared.clock import Clock
from shared.model_availability import ModelAvailability, configured_models, save
from shared.models import normalize_model_name
from shared.settings import Settings

log = logging.getLogger("nanoedit.model_check")
MAX_TIMEOUT_S = 15.0


def list_models_via_sdk(settings: Settings) -> list[str]:
    """Model names the API lists (bare, without `models/`)."""
    from google import genai
    from google.genai import types

    options = types.HttpOptions(api_version="v1beta", base_url=settings.gemini_base_url or None,
                                timeout=int(min(MAX_TIMEOUT_S, settings.gemini_timeout_s) * 1000),
                                retry_options=types.HttpRetryOptions(attempts=1))
    client = genai.Client(api_key=settings.gemini_api_key, vertexai=False, http_options=options)
    try:
        return [normalize_model_name(m.name or "") for m in client.models.list()]
    finally:
        client.close()


def check_models(settings: Settings, clock: Clock, r: redis.Redis,
                 list_models: Callable[[Settings], Iterable[str]] = list_models_via_sdk) -> ModelAvailability | None:
    """Run the check once and store its result; None when the provider is not gemini (nothing to check)."""
    if settings.provider != "gemini":
        return None
    today = dt.datetime.fromtimestamp(clock.now(), dt.UTC).date()
    configured = configured_models(load_catalogue(settings.models_file), settings.gemini_model, today)
    try:
        listed = set(list_models(settings))
    except Exception as exc:  # never str(exc): SDK errors embed bodies and request headers
        log.warning("model check could not list the API's models", extra={"error": type(exc).__name__})
        result = ModelAvailability(checked_at=clock.now(), configured=configured,
                                   error=f"model list unavailable ({type(exc).__name__})")
    else:
        missing = tuple(m for m in configured if m not in listed)
        result = ModelAvailability(checked_at=clock.now(), configured=configured, missing=missing)
        if missing:
            log.error("CONFIGURED MODELS MISSING at the Gemini API: jobs naming them will fail with "
                      "model_unavailable", extra={"missing": list(missing)})
        else:
            log.info("model check: every configured model is listed", extra={"models": list(configured)})
    try:
        save(r, settings.redis_prefix, result)
    except redis.RedisError:
        log.warning("model check result not stored (Redis)")
    return result


def start_in_background(settings: Settings, clock: Clock, r: redis.Redis) -> threading.Thread | None:
    if settings.provider != "gemini":
        return None
    thread = threading.Thread(target=check_models, args=(settings, clock, r), name="nanoedit-model-check",
                              daemon=True)
    thread.start()
    return thread


def install(settings: Settings, clock: Clock) -> None:
    """Connect the check to Celery's worker_ready (the worker's main process, once per instance)."""
    from celery.signals import worker_ready

    from shared.redis_conn import redis_client

    def on_ready(**_: Any) -> None:
        start_in_background(settings, clock, redis_client(settings))

    worker_ready.connect(on_ready, weak=False, dispatch_uid="nanoedit.model_check")
