"""JSON logs for every process (python-json-logger), with job/request/task context from contextvars.

`log_context(job_id=..., task_id=...)` adds fields to every record logged inside it. A filter redacts anything
that looks like a secret (API keys, bearer tokens, whsec_ secrets, URL credentials, Slack/alert webhook URL
tokens, SMTP and Redis passwords: shared/redaction.py) so they never reach the log stream.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from shared.redaction import redact, secrets_of
from shared.settings import Settings

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("nanoedit_log_context",
                                                                                default=None)

CONTEXT_FIELDS = ("job_id", "request_id", "task_id", "stage")



@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get() or {})


class _ContextFilter(logging.Filter):
    def __init__(self, process: str, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.process = process
        self.secrets = tuple(s for s in secrets if len(s) >= 6)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)  # configured values and secret shapes (shared/redaction.py)

    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in (_context.get() or {}).items():
            if not hasattr(record, k):
                setattr(record, k, v)
        record.process_role = self.process
        # No redaction here: the formatter redacts the whole rendered line (message, args, extra fields,
        # tracebacks) once; redacting msg and args here as well cost ~4 % of a status poll (py-spy).
        return True


class _RedactingJsonFormatter(JsonFormatter):
    """Redacts the whole rendered line (message, extra fields, tracebacks), not just the message."""

    def __init__(self, *args: Any, redact: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redact_fn = redact

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return self._redact_fn(text) if self._redact_fn else text


def configure_logging(settings: Settings, *, process: str, stream: Any = None) -> None:
    """Route the root logger to one JSON handler. Safe to call more than once."""
    handler = logging.StreamHandler(stream or sys.stderr)
    secrets = secrets_of(settings)  # keys, tokens, URL passwords, webhook URL tokens
    context_filter = _ContextFilter(process, secrets)
    handler.setFormatter(_RedactingJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        timestamp=False,
        redact=context_filter.redact,
    ))
    handler.addFilter(context_filter)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_nanoedit", False):
            root.removeHandler(h)
    handler._nanoedit = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for noisy in ("urllib3", "httpx", "httpcore", "google_genai", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
