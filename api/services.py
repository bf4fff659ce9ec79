"""What the API's routes use: the process `Runtime` (monitoring/runtime.py), built once by `create_app` and
reached through `services()`."""

from __future__ import annotations

from flask import current_app

from monitoring.runtime import Runtime

Services = Runtime


def services() -> Runtime:
    svc: Runtime = current_app.extensions["nanoedit"]
    return svc
