"""The dashboard's trend charts and system panel (api/static/charts.js) over GET /v1/monitoring/series.

A web process of its own (no workers, no beat) on a Redis database of its own: the only reports in it are the ones
each test stores, so the number of points every chart draws is known. Reports are stored as beat stores them
(the history sorted set scored by time, the latest report beside it), with real timestamps: the web process
runs on the system clock.

The range-toggle test saves a screenshot of the charts to the test's tmp dir and, with
NANOEDIT_UPDATE_SCREENSHOTS=1, to docs/img/dashboard-charts.png (the picture docs/operations.md shows):
`NANOEDIT_UPDATE_SCREENSHOTS=1 .venv/bin/pytest tests/web/test_charts.py`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from playwright.sync_api import Browser, Page, expect

from monitoring.report import ReportKeys
from tests.support.stack import ROOT, RedisServer, Stack, make_stack, wait_for
from tests.web.conftest import PNG_MAGIC

pytestmark = pytest.mark.e2e
DB = 13
PREFIX = "nanoedit-charts"
STEP_S = 30  # NANOEDIT_REPORT_INTERVAL_S of this web process: the hour range has one point per 30 s
QUEUES = ("preprocess", "generate", "webhooks")
NO_LATENCY = range(40, 50)  # reports (by age, in steps) whose latency is below the minimum sample count
DOC_IMAGE = ROOT / "docs" / "img" / "dashboard-charts.png"


@pytest.fixture(scope="module")
def charts_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = make_stack(redis_server.url(DB), tmp_path_factory.mktemp("charts"), NANOEDIT_REDIS_PREFIX=PREFIX,
                   NANOEDIT_REPORT_INTERVAL_S=str(STEP_S), NANOEDIT_WEB_WORKERS="1")
    try:
        s.start_api()
        s.wait_api()
        yield s
    finally:
        s.stop()


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url(DB))
    client.flushdb()
    yield client
    client.flushdb()


def report(ts: float, k: int, system: dict[str, Any] | None = None) -> dict[str, Any]:
    """A health report `k` steps old, in the shape monitoring/report.py builds; smooth daily-looking numbers
    (the picture in the docs is drawn from them), with an error burst 10 to 15 minutes ago."""
    slow = k in NO_LATENCY
    wave = math.sin(k / 40) + 0.25 * math.sin(k * 1.7)
    burst = 0.06 if 20 <= k < 30 else 0.0
    latency = {"p50": round(1.4 + 0.2 * wave, 3), "p95": round(4.2 + 0.8 * wave + 20 * burst, 3),
               "p99": round(7 + 1.5 * wave + 40 * burst, 3), "samples": 40}
    window = {
        "minutes": 5, "jobs_finished": 15, "throughput_per_min": round(3 + 1.2 * wave, 3),
        "by_status": {"succeeded": 15}, "errors_by_code": {}, "error_rate": round(0.008 + 0.004 * wave + burst, 4),
        "timeout_rate": 0.0, "retry_success_rate": None, "jobs_retried": 0,
        "job_latency_s": {"p50": None, "p95": None, "p99": None, "samples": 5} if slow else latency,
        "provider_calls": 15, "provider_outcomes": {"succeeded": 15},
        "provider_latency_s": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "samples": 40},
    }
    body: dict[str, Any] = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)), "generated_at_ts": ts,
        "interval_s": STEP_S, "min_samples": 20, "windows": {"5m": window, "1h": window},
        "queues": {q: {"depth": depth(k, i), "waiting_jobs": 0, "oldest_age_s": None, "live_workers": 1}
                   for i, q in enumerate(QUEUES)},
        "circuit": {"state": "closed"}, "limiter": {}, "beat": {"heartbeat_age_s": 1.0},
    }
    if system is not None:
        body["system"] = system
    return body


def depth(k: int, i: int) -> int:
    return max(0, round((3 - i) * (1 + math.sin(k / 30 + i))))


SYSTEM = {  # the shape monitoring/system_metrics.py puts in the report
    "processes": [
        {"role": "generate", "pid": 202, "host": "node-a", "cpu_percent": 41.0, "rss_bytes": 310 * 2**20,
         "processes": 4, "memory_limit_bytes": 2**30, "limit_source": "cgroup", "memory_ratio": 0.3027},
        {"role": "web", "pid": 101, "host": "node-a", "cpu_percent": 3.5, "rss_bytes": 940 * 2**20,
         "processes": 1, "memory_limit_bytes": 2**30, "limit_source": "cgroup", "memory_ratio": 0.918}],
    "redis": {"used_memory": 870 * 2**20, "maxmemory": 1024 * 2**20, "memory_limit_bytes": 1024 * 2**20,
              "limit_source": "maxmemory", "memory_ratio": 0.85, "connected_clients": 17, "ops_per_sec": 240},
    "process_memory_ratio_max": 0.918}


def store_day(r: redis.Redis) -> list[float]:
    """A report every STEP_S over the last 24 h 10 min, newest first; the newest one is also the latest."""
    keys = ReportKeys(PREFIX)
    now = time.time()
    stamps = [now - k * STEP_S for k in range((86400 + 600) // STEP_S)]
    pipe = r.pipeline(transaction=False)
    for k, ts in enumerate(stamps):
        pipe.zadd(keys.history, {json.dumps(report(ts, k)): ts})
    pipe.set(keys.latest, json.dumps(report(stamps[0], 0, SYSTEM)))
    pipe.execute()
    return stamps


def in_range(stamps: list[float], generated_at_ts: float | str, since_s: int) -> list[float]:
    end = float(generated_at_ts)
    return [t for t in stamps if end - since_s < t <= end]


def open_dashboard(browser: Browser, stack: Stack) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.goto(f"{stack.url}/dashboard")
    return page, errors


def path_points(page: Page, chart: str) -> tuple[dict[str, int], str]:
    """Per drawn line of `chart`: the points its path visits (M/L commands, -1 when data-points disagrees),
    with the generated_at of the series drawn (read together: the page refreshes the series every step)."""
    found: list[Any] = page.evaluate("""(chart) => [Object.fromEntries(
        [...document.querySelectorAll(`#chart-${chart} path.series`)].map((p) => {
          const moves = (p.getAttribute("d").match(/[ML]/g) || []).length;
          return [p.dataset.series, moves === Number(p.dataset.points) ? moves : -1];
        })), document.getElementById("charts-card").dataset.generatedAt]""", chart)
    return found[0], found[1]


def drawn(page: Page, chart: str, stamps: list[float], since_s: int) -> tuple[dict[str, int], int]:
    """What `chart` draws, and how many stored reports fall in the range of the series it drew."""
    points, generated_at = path_points(page, chart)
    return points, len(in_range(stamps, generated_at, since_s))


# ---- the series route ---------------------------------------------------------------------------------------------


def test_series_serves_one_point_per_step_newest_report_first_bucket(charts_stack: Stack, r: redis.Redis) -> None:
    # Given a day of reports every 30 s
    stamps = store_day(r)

    # When the chart series are read for the hour and the day
    hour = requests.get(f"{charts_stack.url}/v1/monitoring/series", params={"range": "1h"}, timeout=10).json()
    day = requests.get(f"{charts_stack.url}/v1/monitoring/series?range=24h", timeout=10).json()

    # Then the hour has every report of its hour, the day one point per 5 minutes, each the newest of its step
    assert (hour["range"], hour["step_s"], hour["window"]) == ("1h", STEP_S, "5m")
    assert [p["ts"] for p in hour["points"]] == sorted(in_range(stamps, hour["generated_at_ts"], 3600))
    assert len(hour["points"]) in (119, 120)
    assert (day["range"], day["step_s"], len(day["points"])) == ("24h", 300, 288)
    gaps = {round(b["ts"] - a["ts"], 3) for a, b in zip(day["points"], day["points"][1:], strict=False)}
    assert gaps == {300.0}
    newest = day["points"][-1]
    assert newest["ts"] == stamps[0] and newest["queue_depth"] == {q: depth(0, i) for i, q in enumerate(QUEUES)}
    assert sum(p["p95"] is None for p in hour["points"]) == len(NO_LATENCY)
    assert set(hour["queues"]) == set(QUEUES)


def test_series_refuses_an_unknown_range(charts_stack: Stack, r: redis.Redis) -> None:
    resp = requests.get(f"{charts_stack.url}/v1/monitoring/series?range=7d", timeout=10)

    assert resp.status_code == 400
    assert resp.json()["code"] == "invalid_request"
    assert "1h" in resp.json()["suggestion"]


# ---- the page -----------------------------------------------------------------------------------------------------


def test_charts_say_no_data_yet_and_system_is_na_without_reports(browser: Browser, charts_stack: Stack,
                                                                 r: redis.Redis) -> None:
    # Given no stored report
    # When the dashboard opens
    page, errors = open_dashboard(browser, charts_stack)
    try:
        # Then every chart shows its empty state, and the system panel says n/a
        expect(page.locator("#charts .chart-empty")).to_have_count(4)
        expect(page.locator("#charts .chart-empty").first).to_have_text("no data yet")
        expect(page.locator("#charts-note")).to_contain_text("No stored health report")
        assert page.locator("#charts svg").count() == 0
        expect(page.locator("#system-processes")).to_have_text("n/a")
        expect(page.locator("#system-redis")).to_have_text("n/a")
        assert errors == []
    finally:
        page.context.close()


def test_charts_draw_stored_reports_and_toggle_hour_and_day(browser: Browser, charts_stack: Stack,
                                                           r: redis.Redis, tmp_path: Path) -> None:
    # Given a day of stored reports, the newest with a system section
    stamps = store_day(r)

    # When the dashboard opens (the hour range)
    page, errors = open_dashboard(browser, charts_stack)
    try:
        card = page.locator("#charts-card")
        expect(card).to_have_attribute("data-range", "1h")
        expect(page.locator("#chart-latency path.series")).to_have_count(3)

        # Then each chart draws one point per stored report of the hour (latency skips the too-few-samples ones)
        points, hour = drawn(page, "latency", stamps, 3600)
        assert points == {k: hour - len(NO_LATENCY) for k in ("p50", "p95", "p99")} and hour >= 119
        for chart, lines in (("throughput", ["throughput"]), ("errors", ["errors"]), ("queues", list(QUEUES))):
            points, hour = drawn(page, chart, stamps, 3600)
            assert points == dict.fromkeys(lines, hour)
        # with its axes readable: time labels every 10 minutes, values with units, a legend per line
        x_labels = page.locator("#chart-latency .x-label").all_text_contents()
        assert len(x_labels) >= 5 and all(re.fullmatch(r"\d{2}:\d0", t) for t in x_labels)
        assert page.locator("#chart-latency .y-label").first.text_content() == "0"
        assert all(t.endswith(" s") for t in page.locator("#chart-latency .y-label").all_text_contents()[1:])
        assert all(t.endswith(" %") for t in page.locator("#chart-errors .y-label").all_text_contents()[1:])
        expect(page.locator("#chart-queues .legend li")).to_have_text([re.compile(f"^{q}") for q in
                                                                       sorted(QUEUES)])
        assert page.evaluate("getComputedStyle(document.querySelector('#chart-latency path.series')).stroke") \
            not in ("", "none")
        # and the system panel shows the processes and Redis memory past the 80 % warning
        expect(page.locator("#system-processes tbody tr")).to_have_count(2)
        expect(page.locator("#system-processes tr[data-role='generate']")).to_contain_text("310 MiB")
        expect(page.locator("#system-processes tr[data-role='web'] [data-field='memory_ratio']")).to_have_attribute(
            "data-level", "bad")
        memory = page.locator("#system-redis [data-field='memory_ratio']")
        expect(memory).to_have_attribute("data-level", "warn")
        expect(memory).to_contain_text("85.0 %")
        page.locator("#system-card").screenshot(path=str(tmp_path / "system.png"))
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

        # When the day range is chosen
        page.click("#charts-card [data-range='24h']")

        # Then the charts redraw with one point per 5 minutes and 3-hourly time labels
        expect(card).to_have_attribute("data-range", "24h")
        expect(page.locator("#charts-card [data-range='24h']")).to_have_attribute("aria-pressed", "true")
        wait_for(lambda: path_points(page, "throughput")[0] == {"throughput": 288}, 20, "the day's 288 points", 0.2)
        assert path_points(page, "queues")[0] == dict.fromkeys(QUEUES, 288)
        day_labels = page.locator("#chart-throughput .x-label").all_text_contents()
        assert 7 <= len(day_labels) <= 9 and all(re.fullmatch(r"\d{2}:00", t) for t in day_labels)
        shot = tmp_path / "dashboard-charts.png"
        card.screenshot(path=str(shot))
        assert shot.read_bytes().startswith(PNG_MAGIC)
        page.click("#charts-card [data-range='1h']")
        expect(card).to_have_attribute("data-range", "1h")
        wait_for(lambda: path_points(page, "throughput")[0]["throughput"] >= 119, 20, "the hour again", 0.2)
        card.screenshot(path=str(tmp_path / "hour.png"))
        if os.environ.get("NANOEDIT_UPDATE_SCREENSHOTS") == "1":  # refresh the picture the docs show, on request
            DOC_IMAGE.parent.mkdir(exist_ok=True)
            shutil.copyfile(tmp_path / "hour.png", DOC_IMAGE)

        # When the hour is chosen again, it is the hour's points again
        page.click("#charts-card [data-range='1h']")
        expect(card).to_have_attribute("data-range", "1h")
        points, hour = drawn(page, "errors", stamps, 3600)
        assert points == {"errors": hour}
        assert errors == []
    finally:
        page.context.close()
