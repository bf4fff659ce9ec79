"""The API's version string (GET /v1 and the OpenAPI document's `info.version`): the installed package's version,
so pyproject.toml is its one source. A source tree that was never installed reports `0+unknown`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("nanoedit")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled checkout
    VERSION = "0+unknown"
