"""The operator dashboard (GET /dashboard) driven in headless Chromium against the real stack.

The session stack is shared: every test that changes the fleet limits or the circuit restores them (the
`restores_admin_state` fixture resets the limits and leaves the circuit CLOSED even when a test fails).
Over ~400 lines on purpose: one page, one browser fixture and one shared stack; splitting would duplicate the
page helpers or spread one screen's behaviour over several files.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, Request, Route, expect

from api.web import PROCFILE, worker_processes
from shared.queueing import TASK_HEALTH_REPORT, make_celery
from shared.settings import Settings
from tests.conftest import FIXTURES
from tests.support.stack import Stack, wait_for
from tests.web.conftest import PNG_MAGIC

pytestmark = pytest.mark.e2e
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def api(stack: Stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{stack.url}{path}", timeout=10, **kwargs)


@pytest.fixture(scope="module")
def report_stack(ready_stack: Stack) -> Stack:
    """The stack once it has a health report, with a couple of finished jobs behind it.

    Beat writes the report every NANOEDIT_REPORT_INTERVAL_S (30 s in the session stack); rather than wait for
    it, the test sends the same task beat sends."""
    photo = (FIXTURES / "chelsea.png").read_bytes()
    ids = [api(ready_stack, "POST", "/v1/jobs", files={"image": ("c.png", photo)},
               data={"instruction": text}).json()["id"] for text in ("sepia", "invert")]
    for job_id in ids:
        wait_for(lambda j=job_id: api(ready_stack, "GET", f"/v1/jobs/{j}").json()["status"] == "succeeded",
                 60, f"job {job_id}", 0.2)
    if api(ready_stack, "GET", "/v1/monitoring/report").status_code == 404:
        make_celery(Settings.from_env(ready_stack.env)).send_task(TASK_HEALTH_REPORT)
    wait_for(lambda: api(ready_stack, "GET", "/v1/monitoring/report").ok, 45, "the first health report", 0.5)
    return ready_stack


@pytest.fixture
def restores_admin_state(report_stack: Stack) -> Iterator[Stack]:
    yield report_stack
    api(report_stack, "DELETE", "/v1/admin/limits").raise_for_status()
    api(report_stack, "POST", "/v1/admin/circuit", json={"state": "closed"}).raise_for_status()
    assert api(report_stack, "GET", "/v1/admin/circuit").json()["state"] == "closed"
    assert api(report_stack, "GET", "/v1/admin/limits").json()["overrides"] == {}


@dataclass
class Dashboard:
    """One browser tab on the dashboard, with everything it logged and requested."""

    page: Page
    base: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def open(self) -> None:
        self.page.goto(f"{self.base}/dashboard")
        expect(self.page.locator("#summary")).not_to_have_text("Loading…")

    def confirm(self) -> None:
        expect(self.page.locator("#confirm")).to_be_visible()
        self.page.click("#confirm-yes")
        expect(self.page.locator("#confirm")).to_be_hidden()

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.url.removeprefix(self.base).split("?")[0] == path]


@pytest.fixture
def dash(browser: Browser, report_stack: Stack) -> Iterator[Dashboard]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    d = Dashboard(page=page, base=report_stack.url)
    page.on("console", lambda msg: d.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: d.console_errors.append(f"uncaught: {exc}"))
    page.on("request", lambda req: d.requests.append(req))
    yield d
    # A route handler may still be running (route.fetch) when the test ends: let it fail quietly instead of
    # raising "Response has been disposed" into the next test's setup.
    d.page.unroute_all(behavior="ignoreErrors")
    context.close()


def fulfill_report(page: Page, change: Any) -> None:
    """Serve the real latest report, changed by `change(report)`, to the page."""
    def handle(route: Route) -> None:
        resp = route.fetch()
        body = copy.deepcopy(resp.json())
        change(body)
        route.fulfill(response=resp, json=body)

    page.route(re.compile(r"/v1/monitoring/report$"), handle)


# ---- the page itself ---------------------------------------------------------------------------------------------


def test_dashboard_is_served_with_a_self_only_policy(report_stack: Stack) -> None:
    resp = api(report_stack, "GET", "/dashboard")

    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "http" not in re.sub(r'href="/[^"]*"', "", resp.text.split("<body>")[0])  # no other host in <head>
    for asset in ("dashboard.js", "dashboard.css"):
        assert api(report_stack, "GET", f"/static/{asset}").ok


def test_procfile_worker_lines_name_their_queues() -> None:
    workers = {w["process"]: w for w in worker_processes(PROCFILE.read_text())}

    assert set(workers) == {"preprocess", "generate", "webhooks"}  # web and beat are not worker lines
    assert workers["preprocess"]["queues"] == ["preprocess", "maintenance"]
    assert workers["generate"]["queues"] == ["generate"]
    assert workers["webhooks"]["queues"] == ["webhooks"]
    assert "-n generate-$$@%h" in str(workers["generate"]["command"])


def test_shows_queues_live_workers_and_the_report_time(dash: Dashboard, report_stack: Stack) -> None:
    # Given the stack with a health report, when the dashboard opens
    page = dash.page
    before = api(report_stack, "GET", "/v1/monitoring/report").json()["generated_at"]
    dash.open()

    # Then preprocess and generate each show at least one live worker instance
    for queue in ("preprocess", "generate"):
        cell = page.locator(f'#queues tr[data-queue="{queue}"] td[data-field="live_workers"]')
        expect(cell).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(page.locator("#ready")).to_have_attribute("data-state", "ready")

    # And the timestamp of the API's latest report (or of a newer one)
    stamp = page.locator("#report-time")
    expect(stamp).to_have_attribute("data-generated-at", RFC3339)
    expect(stamp).to_contain_text("Report ")
    assert str(stamp.get_attribute("data-generated-at")) >= before  # same RFC 3339 form: sorts as time

    # And both windows, the circuit, the limits and the alerts panel are filled in
    expect(page.locator('#windows th[data-window="5m"]')).to_have_text("Last 5 min")
    expect(page.locator('#windows th[data-window="1h"]')).to_have_text("Last hour")
    expect(page.locator("#circuit-state")).to_have_attribute("data-state", "closed")
    limits = api(report_stack, "GET", "/v1/admin/limits").json()
    expect(page.locator("#limits-facts")).to_have_attribute("data-rpm", str(limits["config"]["rpm"]))
    expect(page.locator("#alerts")).not_to_have_attribute("aria-busy", "true")

    # And the scaling hints carry the Procfile's command for one more generate instance
    command = page.locator('#scaling [data-queue="generate"] .command')
    expect(command).to_contain_text("-Q generate -n generate-")
    expect(command).to_have_text(re.compile(rf"-n generate-\d+@%h -P gevent -c {limits['defaults']['concurrency']} "))
    expect(page.locator('#scaling [data-queue="preprocess"] .command')).to_contain_text(
        "-Q preprocess,maintenance")


def test_limits_form_changes_rpm_and_reset_restores(dash: Dashboard, restores_admin_state: Stack) -> None:
    stack = restores_admin_state
    page = dash.page
    defaults = api(stack, "GET", "/v1/admin/limits").json()["defaults"]
    dash.open()
    expect(page.locator("#limits-facts")).to_have_attribute("data-rpm", str(defaults["rpm"]))

    # When rpm is changed but the confirm step is canceled, nothing is sent
    page.fill("#limit-rpm", "4321")
    page.click("#limits-apply")
    expect(page.locator("#confirm-text")).to_contain_text("4321")
    page.click("#confirm-no")
    assert dash.calls("PATCH", "/v1/admin/limits") == []

    # When it is applied and confirmed, the fleet's rpm changes and the page shows it
    page.click("#limits-apply")
    dash.confirm()
    expect(page.locator("#limits-facts")).to_have_attribute("data-rpm", "4321")
    expect(page.locator("#limits-result")).to_contain_text("Limits changed")
    expect(page.locator("#limits-facts")).to_contain_text("override")
    assert api(stack, "GET", "/v1/admin/limits").json()["config"]["rpm"] == 4321
    patch = dash.calls("PATCH", "/v1/admin/limits")
    assert len(patch) == 1 and patch[0].post_data_json == {"rpm": 4321}  # only what changed

    # When reset is confirmed, the defaults are back
    page.click("#limits-reset")
    dash.confirm()
    expect(page.locator("#limits-facts")).to_have_attribute("data-rpm", str(defaults["rpm"]))
    expect(page.locator("#limit-rpm")).to_have_value(str(defaults["rpm"]))
    assert api(stack, "GET", "/v1/admin/limits").json()["overrides"] == {}


def test_a_rejected_limit_shows_the_api_error_body(dash: Dashboard, restores_admin_state: Stack) -> None:
    # Given what the API answers for concurrency 0
    expected = api(restores_admin_state, "PATCH", "/v1/admin/limits", json={"concurrency": 0}).json()
    assert expected["code"] == "invalid_request"
    page = dash.page
    dash.open()

    # When the form sends it
    page.fill("#limit-concurrency", "0")
    page.click("#limits-apply")
    dash.confirm()

    # Then the page shows that body: message, code and suggestion; nothing changed
    result = page.locator("#limits-result .error")
    expect(result.locator(".error-title")).to_have_text(expected["error"])
    expect(result.locator("code")).to_have_text(expected["code"])
    expect(result).to_contain_text(expected["suggestion"])
    assert api(restores_admin_state, "GET", "/v1/admin/limits").json()["overrides"] == {}


def test_forcing_the_circuit_open_then_closed(dash: Dashboard, restores_admin_state: Stack) -> None:
    stack = restores_admin_state
    page = dash.page
    dash.open()
    expect(page.locator("#circuit-state")).to_have_attribute("data-state", "closed")

    # When the circuit is forced open (confirmed)
    page.click("#circuit-open")
    expect(page.locator("#confirm-title")).to_have_text("Force the circuit open?")
    dash.confirm()

    # Then the page and the API say open, highlighted, in the summary too
    expect(page.locator("#circuit-state")).to_have_attribute("data-state", "open")
    expect(page.locator("#circuit-state")).to_have_attribute("data-level", "bad")
    expect(page.locator("#circuit-note")).to_have_text("forced open by an operator")
    expect(page.locator("#summary")).to_contain_text("circuit open")
    assert api(stack, "GET", "/v1/admin/circuit").json()["state"] == "open"

    # When it is forced closed (confirmed), it is closed again and the transitions are listed
    page.click("#circuit-close")
    dash.confirm()
    expect(page.locator("#circuit-state")).to_have_attribute("data-state", "closed")
    expect(page.locator("#circuit-result")).to_contain_text("Circuit forced closed.")
    expect(page.locator("#circuit-history li").first).to_contain_text("forced closed")
    assert api(stack, "GET", "/v1/admin/circuit").json()["state"] == "closed"
    assert [r.post_data_json for r in dash.calls("POST", "/v1/admin/circuit")] == [{"state": "open"},
                                                                                 {"state": "closed"}]


def test_self_contained_no_console_errors_and_polls(dash: Dashboard, report_stack: Stack, tmp_path: Path) -> None:
    # Given the dashboard left open for two polls
    page = dash.page
    dash.open()
    wait_for(lambda: _pump(page, lambda: len(dash.calls("GET", "/v1/monitoring/report")) >= 2), 15, "a second poll")

    # Then nothing went to the console, and every request stayed on the stack's origin
    assert dash.console_errors == []
    base = report_stack.url + "/"
    assert [r.url for r in dash.requests if not (r.url.startswith(base) or r.url.startswith("data:"))] == []
    paths = {(r.method, r.url.removeprefix(base)) for r in dash.requests}
    assert {("GET", "dashboard"), ("GET", "v1"), ("GET", "v1/monitoring/report"), ("GET", "readyz?detailed=true"),
            ("GET", "v1/admin/limits"), ("GET", "v1/admin/circuit"),
            ("GET", "v1/monitoring/alerts?state=firing")} <= paths

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(PNG_MAGIC)


def test_narrow_screen_has_no_sideways_scroll(browser: Browser, report_stack: Stack) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(f"{report_stack.url}/dashboard")
    expect(page.locator('#scaling [data-queue="generate"]')).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    context.close()


# ---- states the shared stack cannot be put in: real answers, rewritten on the way to the page ---------------------


def test_bad_values_are_highlighted_and_thin_percentiles_explained(dash: Dashboard) -> None:
    def bad_day(report: dict[str, Any]) -> None:
        w = report["windows"]["5m"]
        w.update(error_rate=0.25, timeout_rate=0.0)
        w["job_latency_s"] = {"p50": None, "p95": None, "p99": None, "samples": 3}
        report["queues"]["generate"].update(live_workers=0, depth=7, oldest_age_s=300.0)
        report["min_samples"] = 20

    fulfill_report(dash.page, bad_day)
    page = dash.page
    dash.open()

    # Then the error rate is shown as a percentage and marked bad; the dead queue too
    error_cell = page.locator("#windows tr", has_text="Error rate").locator('td[data-window="5m"] .val')
    expect(error_cell).to_have_text("25 %")
    expect(error_cell).to_have_attribute("data-level", "bad")
    live = page.locator('#queues tr[data-queue="generate"] td[data-field="live_workers"] .val')
    expect(live).to_have_text("0")
    expect(live).to_have_attribute("data-level", "bad")

    # And a percentile below the minimum sample count is a dash with a tooltip saying why
    p95 = page.locator("#windows tr", has_text="Job latency").locator('td[data-window="5m"] .pc').nth(1).locator(".val")
    expect(p95).to_contain_text("—")
    expect(p95).to_have_attribute("title", re.compile(r"fewer than 20 samples .*\(3 so far\)"))

    # And the summary and the scaling hint say what is wrong and what to run
    expect(page.locator("#summary")).to_contain_text("no live worker for generate")
    expect(page.locator("#summary")).to_contain_text("error rate 25 %")
    hint = page.locator('#scaling [data-queue="generate"]')
    expect(hint).to_have_attribute("data-level", "bad")
    expect(hint.locator(".advice")).to_contain_text("No live instance")
    expect(hint.locator(".command")).to_contain_text("-Q generate -n generate-2@%h")


def test_no_report_yet(dash: Dashboard) -> None:
    dash.page.route(re.compile(r"/v1/monitoring/report$"), lambda route: route.fulfill(
        status=404, json={"error": "Not found.", "code": "not_found", "details": "no health report yet",
                          "suggestion": "Check that the beat process runs.", "status_code": 404}))
    dash.open()

    expect(dash.page.locator("#report-time")).to_have_text("no report yet (is beat running?)")
    expect(dash.page.locator("#queues")).to_have_text("no report yet (is beat running?)")
    expect(dash.page.locator("#ready")).to_have_attribute("data-state", "ready")  # the other panels still work


def test_alerts_unavailable_when_the_route_is_missing(dash: Dashboard) -> None:
    dash.page.route(re.compile(r"/v1/monitoring/alerts\?"), lambda route: route.fulfill(
        status=404, json={"error": "Not found.", "code": "not_found", "status_code": 404}))
    dash.open()

    expect(dash.page.locator("#alerts")).to_have_text("alerts: not available")
    expect(dash.page.locator("#circuit-state")).to_have_attribute("data-state", "closed")


def test_ack_button_acknowledges_a_firing_alert(dash: Dashboard) -> None:
    page = dash.page
    summary = "No live worker consumes the generate queue"
    alert = {"id": "no_live_worker:generate", "rule": "no_live_worker", "group": "workers", "severity": "critical",
             "labels": {"queue": "generate"}, "state": "firing", "summary": summary,
             "fired_at": "2026-01-01T00:00:00.000Z", "acknowledged": None, "silenced_by": None}
    acks: list[Any] = []

    def alerts(route: Route) -> None:
        acked = {"by": "dashboard", "at": "2026-01-01T00:01:00.000Z", "episode": "e1"} if acks else None
        route.fulfill(json={"state": "firing", "alerts": [{**alert, "acknowledged": acked}]})

    def ack(route: Route, request: Request) -> None:
        acks.append(request.post_data_json)
        route.fulfill(json={**alert, "acknowledged": {"by": "dashboard", "at": "2026-01-01T00:01:00.000Z"}})

    page.route(re.compile(r"/v1/monitoring/alerts\?state=firing$"), alerts)
    page.route(re.compile(r"/v1/monitoring/alerts/[^/]+/ack$"), ack)
    dash.open()

    item = page.locator('#alerts li[data-alert="no_live_worker:generate"]')
    expect(item).to_contain_text(summary)
    expect(page.locator("#summary")).to_contain_text("1 firing alert")
    item.get_by_role("button", name=f"Acknowledge {summary}").click()
    dash.confirm()

    expect(item.locator(".acked")).to_contain_text("Acknowledged by dashboard")
    expect(page.locator("#alerts-result")).to_contain_text("Acknowledged")
    assert acks == [{"by": "dashboard"}]
    assert dash.calls("POST", "/v1/monitoring/alerts/no_live_worker%3Agenerate/ack")


def test_admin_token_field_when_auth_is_on(dash: Dashboard, report_stack: Stack) -> None:
    # Given GET /v1 reporting auth on (the stack runs without keys, so only that answer is rewritten)
    page = dash.page

    def auth_on(route: Route) -> None:
        resp = route.fetch()
        route.fulfill(response=resp, json={**resp.json(), "auth": "api_key"})

    page.route(f"{report_stack.url}/v1", auth_on)
    dash.open()

    # Then the token field shows; what is typed stays in sessionStorage only and survives a reload
    expect(page.locator("#admin-token")).to_be_visible()
    page.fill("#admin-token", "admin-secret-1")
    page.locator("#admin-token").press("Enter")
    assert page.evaluate("sessionStorage.getItem('nanoedit.admin_token')") == "admin-secret-1"
    assert page.evaluate("localStorage.length") == 0
    dash.requests.clear()
    page.reload()
    expect(page.locator("#admin-token")).to_have_value("admin-secret-1")

    # And the admin and monitoring reads carry it as X-Admin-Token
    expect(page.locator("#summary")).not_to_have_text("Loading…")
    admin = [r for r in dash.requests if "/v1/admin/" in r.url or "/v1/monitoring/" in r.url]
    assert len(admin) >= 4
    assert all(r.headers.get("x-admin-token") == "admin-secret-1" for r in admin)


def test_an_operator_route_refusing_asks_for_the_token(dash: Dashboard) -> None:
    # Given operator routes that answer 401 without the right X-Admin-Token (an admin token set, API keys off)
    page = dash.page

    def guarded(route: Route, request: Request) -> None:
        if request.headers.get("x-admin-token") == "ops-token":
            route.continue_()
            return
        route.fulfill(status=401, json={"error": "Authentication is required.", "code": "unauthorized",
                                        "details": "this route needs the admin token", "status_code": 401,
                                        "suggestion": "Send 'Authorization: Bearer <NANOEDIT_ADMIN_TOKEN>'."})

    page.route(re.compile(r"/v1/(admin|monitoring)/"), guarded)
    dash.open()

    # Then the token field appears and the panels say what they need
    expect(page.locator("#admin-token")).to_be_visible()
    expect(page.locator("#alerts")).to_have_text("alerts: needs the admin token (enter it above).")
    expect(page.locator("#report-time")).to_have_text("the report needs the admin token")

    # When the token is entered, the panels fill in
    page.fill("#admin-token", "ops-token")
    page.locator("#admin-token").press("Enter")
    expect(page.locator('#queues tr[data-queue="generate"]')).to_be_visible()
    expect(page.locator("#circuit-state")).to_have_attribute("data-state", "closed")
    expect(page.locator("#report-time")).to_have_attribute("data-generated-at", RFC3339)

def test_polling_backs_off_while_the_service_is_unreachable(dash: Dashboard) -> None:
    # Given every API call failing at the network level (the page itself loaded)
    dash.page.route(re.compile(r"/(v1|readyz)"), lambda route: route.abort("connectionrefused"))
    dash.open()

    # Then the page says so and waits longer than the normal 5 s before the next try
    expect(dash.page.locator("#summary")).to_contain_text("service unreachable")
    expect(dash.page.locator("#poll-state")).to_have_text(re.compile(r"service unreachable; retrying in 10 s"))
    expect(dash.page.locator("#poll-state")).to_have_attribute("data-level", "bad")


def _pump(page: Page, predicate: Any) -> bool:
    """Let Playwright dispatch events (they run on this thread) while waiting."""
    page.wait_for_timeout(200)
    return bool(predicate())
