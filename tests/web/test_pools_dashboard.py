"""The dashboard's "Worker pools" card in headless Chromium against the real session stack: it renders every
queue's instances and the fleet cap beside the generate pools, and + grows the generate pool for real.

The session stack is shared: the test that grows the pool shrinks it back (the `restores_generate_pool` fixture,
retrying while every process is busy) even when it fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from tests.support.stack import Stack, wait_for

pytestmark = pytest.mark.e2e


def api(stack: Stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{stack.url}{path}", timeout=15, **kwargs)


def generate_slots(stack: Stack) -> int:
    return int(api(stack, "GET", "/v1/admin/workers").json()["queues"]["generate"]["slots"])


@pytest.fixture
def page(browser: Browser, ready_stack: Stack) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    errors: list[str] = []  # uncaught script errors (a 404 of the not-yet-written health report is not one)
    p.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    yield p
    p.unroute_all(behavior="ignoreErrors")
    context.close()
    assert errors == []


@pytest.fixture
def restores_generate_pool(ready_stack: Stack) -> Iterator[int]:
    """The generate pool's slots before the test; afterwards it is shrunk back to them."""
    wait_for(lambda: generate_slots(ready_stack) > 0, 30, "a generate instance to answer", 0.5)
    before = generate_slots(ready_stack)
    yield before

    def restored() -> bool:
        extra = generate_slots(ready_stack) - before
        if extra > 0:  # a busy process cannot be stopped: ask again until it is idle
            api(ready_stack, "POST", "/v1/admin/workers/scale", json={"queue": "generate", "delta": -extra})
        return extra <= 0

    wait_for(restored, 90, f"the generate pool back at {before} slots", 1.0)


def test_pools_card_shows_instances_and_the_fleet_cap(page: Page, ready_stack: Stack) -> None:
    # Given what the API says about the pools
    view = wait_for(lambda: (v := api(ready_stack, "GET", "/v1/admin/workers").json())
                    and v["queues"]["generate"]["instances"] and v["queues"]["webhooks"]["instances"] and v,
                    30, "generate and webhooks instances to answer", 0.5)

    # When the dashboard opens
    page.goto(f"{ready_stack.url}/dashboard")

    # Then the Worker pools card lists each queue's instances with their slots
    expect(page.locator("#scaling-title")).to_have_text("Worker pools")
    generate = page.locator('#pools article[data-queue="generate"]')
    for instance in view["queues"]["generate"]["instances"]:
        expect(generate.locator(f'tr[data-instance="{instance["name"]}"] td[data-field="concurrency"]')).to_have_text(
            re.compile(r"^\d+$"))
    expect(generate).to_have_attribute("data-slots", re.compile(r"^[1-9]\d*$"))

    # And the fleet cap sits beside the generate pool slots, saying which binds
    cap = generate.locator(".cap")
    expect(cap).to_have_attribute("data-binds", re.compile(r"^(fleet_cap|pool|both)$"))
    expect(cap).to_contain_text(f"Fleet cap {view['fleet_cap']['concurrency']}")
    expect(cap).to_contain_text(re.compile(r"pool slots \d+ [<>=] fleet cap \d+: (the cap|the pool|both) binds?"))

    # And the threads pool of webhooks has no buttons, only why
    hooks = page.locator('#pools article[data-queue="webhooks"]')
    expect(hooks).to_contain_text("Fixed-size pool (threads)")
    assert hooks.locator("button").count() == 0


def test_plus_grows_the_generate_pool(page: Page, ready_stack: Stack, restores_generate_pool: int) -> None:
    before = restores_generate_pool
    page.goto(f"{ready_stack.url}/dashboard")
    generate = page.locator('#pools article[data-queue="generate"]')
    expect(generate).to_have_attribute("data-slots", str(before), timeout=15_000)

    # When + is clicked and confirmed
    generate.get_by_role("button", name="Grow the generate pools by one process").click()
    expect(page.locator("#confirm-title")).to_have_text("Grow the generate pools by 1?")
    page.click("#confirm-yes")

    # Then the API grew the pool, the page says what changed and shows the new slot count
    expect(page.locator("#pools-result")).to_contain_text(f"generate: {before} → {before + 1} slots (+1 applied)")
    wait_for(lambda: generate_slots(ready_stack) == before + 1, 30, "one more generate process", 0.5)
    expect(generate).to_have_attribute("data-slots", str(before + 1), timeout=20_000)
