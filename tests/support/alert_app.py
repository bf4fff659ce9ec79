"""The API app for alert, audit and operator-route tests: fakeredis, a fake clock at T0, stub blobs and enqueuer,
and the one rule those tests fire (a critical on the 5-minute error rate)."""

from __future__ import annotations

from pathlib import Path

import fakeredis
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings

T0 = 1_700_000_000.0
RULE = """
[[rules]]
name = "errors"
group = "job_errors"
severity = "critical"
metric = "windows.5m.error_rate"
op = ">"
threshold = 0.1
summary = "error rate {value:.0%}"
"""


def rules_file(tmp_path: Path) -> str:
    """A rules file holding RULE only, as NANOEDIT_ALERT_RULES would name it."""
    path = tmp_path / "rules.toml"
    path.write_text(RULE)
    return str(path)


class AlertApp:
    """`settings`, the app, its test client, its clock and its (fake) Redis."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock = FakeClock(T0)
        self.r = fakeredis.FakeRedis(decode_responses=True)
        self.app: Flask = create_app(settings, clock=self.clock, redis_conn=self.r, blobs=MemoryBlobStore(),
                                     enqueuer=RecordingEnqueuer())
        self.client: FlaskClient = self.app.test_client()
