"""Browser fixtures for the pages: Debian's /usr/bin/chromium driven by Playwright against the real stack.

Browsers cannot be downloaded here, so the system Chromium is used: missing, the tests skip locally and fail in CI.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, sync_playwright

from tests.support.stack import Stack, require_binary, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_binary(CHROMIUM)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def ready_stack(stack: Stack) -> Stack:
    """The stack once /readyz says ready, so the pages' readiness checks are a 200 (no console error)."""
    wait_for(lambda: requests.get(f"{stack.url}/readyz", timeout=5).ok, 30, "/readyz to answer 200", 0.2)
    return stack
