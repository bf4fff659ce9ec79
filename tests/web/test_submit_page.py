"""The submit page (GET /) driven in headless Chromium against the real stack (gunicorn + workers + beat).

Uses Debian's /usr/bin/chromium (fixtures in tests/web/conftest.py): missing, it skips locally and fails in CI.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, Page, Request, Route, expect

from tests.conftest import FIXTURES
from tests.support.stack import Stack, wait_for
from tests.web.conftest import PNG_MAGIC

pytestmark = pytest.mark.e2e
CHELSEA = FIXTURES / "chelsea.png"
JOB_TIMEOUT_MS = 60_000


@dataclass
class Session:
    """One browser tab on the stack, with everything it logged and requested."""

    page: Page
    base: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def open(self) -> None:
        self.page.goto(f"{self.base}/")
        expect(self.page.locator("#ready")).to_have_attribute("data-state", "ready")

    def submit(self, instruction: str, *files: Path) -> None:
        self.page.set_input_files("#images", [str(f) for f in files])
        self.page.fill("#instruction", instruction)
        self.page.click("#submit")

    def wait_status(self, status: str) -> None:
        expect(self.page.locator("#status")).to_have_attribute("data-status", status, timeout=JOB_TIMEOUT_MS)


@pytest.fixture
def session(browser: Browser, ready_stack: Stack) -> Iterator[Session]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    s = Session(page=page, base=ready_stack.url)
    page.on("console", lambda msg: s.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: s.console_errors.append(f"uncaught: {exc}"))
    page.on("request", lambda req: s.requests.append(req))
    yield s
    # A route handler may still be running (route.fetch) when the test ends: let it fail quietly instead of
    # raising "Response has been disposed" into the next test's setup.
    s.page.unroute_all(behavior="ignoreErrors")
    context.close()


def api_error(stack: Stack, files: list[tuple[str, bytes]], **fields: str) -> dict[str, Any]:
    """What the API itself answers for this submission: the page must show exactly this."""
    resp = requests.post(f"{stack.url}/v1/jobs", files=[("image", f) for f in files], data=fields, timeout=10)
    assert resp.status_code >= 400, resp.text
    return dict(resp.json())


def assert_shows_error(page: Page, expected: dict[str, Any]) -> None:
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-title")).to_have_text(expected["error"])
    expect(page.locator("#error-code")).to_have_text(expected["code"])
    expect(page.locator("#error-suggestion")).to_have_text(expected["suggestion"])
    expect(page.locator("#error-details")).to_have_text(expected["details"])
    expect(page.locator("#status")).to_have_attribute("data-status", "rejected")
    expect(page.locator("#job")).to_be_hidden()


def wait_for_output_image(page: Page) -> None:
    """Poll from the test through evaluate (DevTools, outside the page's CSP): Playwright's wait_for_function
    polls inside the page with eval, which the page's CSP (no 'unsafe-eval') refuses whenever a poll is needed."""
    wait_for(lambda: page.evaluate("document.querySelector('#outputs img')?.naturalWidth > 0"), 15,
             "the output image to load")


def test_edit_job_shows_the_output_and_its_download(session: Session, tmp_path: Path) -> None:
    # Given the page, when a photo is submitted with an instruction the local provider understands
    page = session.page
    session.open()
    session.submit("make it black and white", CHELSEA)

    # Then the job id shows at once and the status reaches succeeded
    expect(page.locator("#job-id")).to_have_text(re.compile(r"^[0-9a-f]{32}$"))
    job_id = page.locator("#job-id").inner_text()
    session.wait_status("succeeded")
    expect(page.locator("#status-value")).to_have_text("succeeded")
    expect(page.locator("#progress-text")).to_have_text("1 of 1 output done")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()

    # And the output image is displayed at its real size
    img = page.locator("#outputs img").first
    expect(img).to_be_visible()
    wait_for(lambda: img.evaluate("img => img.complete && img.naturalWidth > 0"), 15, "the output image to load")
    assert img.evaluate("img => img.naturalWidth") == 451

    # And its download link yields the image bytes
    with page.expect_download() as info:
        page.click("#outputs a.download")
    download = info.value
    assert download.suggested_filename == f"{job_id}-0.png"
    data = Path(download.path()).read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(data)).size == (451, 300)

    shot = tmp_path / "submit-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0 and shot.read_bytes().startswith(PNG_MAGIC)


def test_blank_instruction_shows_missing_instruction(session: Session, ready_stack: Stack) -> None:
    # Given the page with the browser's own `required` check removed
    page = session.page
    session.open()
    page.evaluate("document.querySelector('#instruction').removeAttribute('required')")

    # When a photo is submitted without an instruction
    session.submit("", CHELSEA)

    # Then the page shows the API's error body: message, code, details and suggestion
    expected = api_error(ready_stack, [("chelsea.png", CHELSEA.read_bytes())], instruction="")
    assert expected["code"] == "missing_instruction"
    assert_shows_error(page, expected)
    expect(page.locator("#error")).to_be_focused()


def test_text_file_named_png_shows_unsupported_media_type(session: Session, ready_stack: Stack,
                                                          tmp_path: Path) -> None:
    # Given a text file with an image's name
    fake = tmp_path / "x.png"
    fake.write_text("this is not an image\n")
    session.open()

    # When it is submitted
    session.submit("make it black and white", fake)

    # Then the page shows unsupported_media_type and its suggestion (the type comes from the bytes)
    expected = api_error(ready_stack, [("x.png", fake.read_bytes())], instruction="make it black and white")
    assert expected["code"] == "unsupported_media_type"
    assert_shows_error(session.page, expected)


def test_page_is_self_contained_and_logs_no_errors(session: Session, ready_stack: Stack) -> None:
    # Given the page, when a whole job runs through it
    session.open()
    session.submit("rotate 90 degrees", CHELSEA)
    session.wait_status("succeeded")
    wait_for_output_image(session.page)

    # Then nothing went to the console, and every request stayed on the stack's origin
    assert session.console_errors == []
    base = ready_stack.url + "/"
    foreign = [r.url for r in session.requests
               if not (r.url.startswith(base) or r.url.startswith("blob:" + base) or r.url.startswith("data:"))]
    assert foreign == []
    paths = {(r.method, r.url.removeprefix(base).split("?")[0]) for r in session.requests}
    assert {("GET", ""), ("GET", "v1"), ("GET", "readyz"), ("POST", "v1/jobs")} <= paths
    assert any(m == "GET" and re.fullmatch(r"v1/jobs/[0-9a-f]{32}/outputs/0", p) for m, p in paths)


def test_api_key_field_when_auth_is_on(session: Session, ready_stack: Stack) -> None:
    # Given GET /v1 reporting auth on (the stack runs without keys, so only that answer is rewritten)
    page = session.page

    def auth_on(route: Route) -> None:
        resp = route.fetch()
        route.fulfill(response=resp, json={**resp.json(), "auth": "api_key"})

    page.route(f"{ready_stack.url}/v1", auth_on)
    session.open()

    # Then the key field shows; what is typed stays in sessionStorage only and survives a reload
    expect(page.locator("#api-key")).to_be_visible()
    page.fill("#api-key", "test-key-123")
    assert page.evaluate("sessionStorage.getItem('nanoedit.api_key')") == "test-key-123"
    assert page.evaluate("localStorage.length") == 0
    page.reload()
    expect(page.locator("#api-key")).to_have_value("test-key-123")

    # And every API call of a job carries it as a bearer token
    session.requests.clear()
    session.submit("sepia", CHELSEA)
    session.wait_status("succeeded")
    wait_for_output_image(page)
    api_calls = [r for r in session.requests if "/v1/jobs" in r.url]
    assert {r.method for r in api_calls} >= {"POST", "GET"}
    assert any("/outputs/" in r.url for r in api_calls)
    assert all(r.headers.get("authorization") == "Bearer test-key-123" for r in api_calls)


def test_cancel_button_and_unknown_status(session: Session) -> None:
    # Given polls that report an unknown status until the Cancel click (the real job is done by then)
    page = session.page
    real_status: list[str] = []
    cancel_sent: list[bool] = []

    def hold(route: Route, request: Request) -> None:
        if request.method == "DELETE":
            cancel_sent.append(True)
            route.continue_()
            return
        resp = route.fetch()
        body = resp.json()
        real_status.append(body["status"])
        if not cancel_sent:
            body.update(status="paused_for_review", stage="generating", outputs=[],
                        progress={"outputs_done": 0, "outputs_total": 1}, timings={})
        route.fulfill(response=resp, json=body)

    page.route(re.compile(r"/v1/jobs/[0-9a-f]{32}$"), hold)
    session.open()
    session.submit("invert", CHELSEA)

    # Then an unknown status is treated as still running: Cancel is offered and polling goes on
    session.wait_status("paused_for_review")
    expect(page.locator("#cancel")).to_be_visible()
    wait_for(lambda: _pump(page, lambda: "succeeded" in real_status), 30, "the real job to finish")

    # When Cancel is clicked after the job finished, the API's 409 is shown and the real result follows
    page.click("#cancel")
    expect(page.locator("#error-code")).to_have_text("conflict")
    expect(page.locator("#error-suggestion")).not_to_be_empty()
    session.wait_status("succeeded")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#outputs img")).to_have_count(1)
    assert cancel_sent == [True]


def _pump(page: Page, predicate: Callable[[], bool]) -> bool:
    """Let Playwright dispatch route handlers (they run on this thread) while waiting."""
    page.wait_for_timeout(100)
    return predicate()
