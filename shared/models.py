"""The model-name rule: what a configured or requested Gemini model name means.

Owns the one normalisation every reader of a model name applies (settings at start-up, the provider per call):
the API's resource form `models/gemini-…` and the bare `gemini-…` name the same model, and the bare name is what
we store, log and send.
"""

from __future__ import annotations

DEFAULT_MODEL = "gemini-3.1-flash-image"  # the catalogue (shared/models.toml) says what each model accepts


def normalize_model_name(name: str) -> str:
    """`models/gemini-2.5-flash-image` → `gemini-2.5-flash-image`; surrounding blanks dropped; blank stays blank."""
    return name.strip().removeprefix("models/")
