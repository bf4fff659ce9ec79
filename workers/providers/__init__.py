"""Provider selection: `local` (offline, default without a key) or `gemini` (google-genai)."""

from __future__ import annotations

from shared.clock import Clock
from shared.settings import Settings
from workers.providers.base import Provider


def build_provider(settings: Settings, clock: Clock) -> Provider:
    if settings.provider == "gemini":
        from workers.providers.gemini import GeminiProvider

        return GeminiProvider(api_key=settings.gemini_api_key, model=settings.gemini_model,
                              timeout_s=settings.gemini_timeout_s, base_url=settings.gemini_base_url)
    from workers.providers.local import LocalProvider

    return LocalProvider(delay_s=settings.local_delay_s, clock=clock, max_long_edge=settings.max_long_edge)
