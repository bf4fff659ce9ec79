"""The submit page's model and option selects, filled from GET /v1/models, in headless Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import FIXTURES
from tests.web.test_submit_page import Session, session  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


def test_option_selects_follow_the_chosen_model_and_reach_the_job(session: Session) -> None:  # noqa: F811
    session.open()
    page = session.page
    expect(page.locator("#model option[value='gemini-3.1-flash-lite-image']")).to_have_count(1)
    expect(page.locator("#model option[value='gemini-2.5-flash-image']")).to_have_count(0)  # retired: not offered
    page.select_option("#model", "gemini-3.1-flash-image")
    expect(page.locator("#image-size option")).to_have_count(4)  # Default, 1K, 2K, 4K
    page.select_option("#image-size", "2K")
    page.select_option("#model", "gemini-3.1-flash-lite-image")
    expect(page.locator("#image-size option")).to_have_count(2)  # Default, 1K
    expect(page.locator("#image-size")).to_have_value("")  # 2K is not offered by flash-lite: back to default
    page.select_option("#aspect-ratio", "4:3")
    page.select_option("#output-format", "webp")
    with page.expect_response(lambda r: r.url.endswith("/v1/jobs") and r.request.method == "POST") as info:
        session.submit("grayscale", FIXTURES / "chelsea.png")
    job = info.value.json()
    assert job["options"]["aspect_ratio"] == "4:3" and job["options"]["output_format"] == "webp"
    assert job["options"]["image_size"] is None
