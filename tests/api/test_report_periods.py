"""`GET /v1/monitoring/report?period=weekly|monthly[&period_id=]` and `nanoedit report --weekly|--monthly`
(Flask app over fakeredis with a fake clock; the CLI against the app served over a real socket)."""

from __future__ import annotations

import json

import pytest

from tests.api.test_bounded_intake import Env, error
from tests.shared.test_client_cli import Server, server  # noqa: F401  (the served-app fixture)
from workers.cli import main

# T0 of the test app's FakeClock, 2023-11-14 22:13 UTC, lies in ISO week 2023-W46.


@pytest.fixture
def env() -> Env:
    return Env()


def test_weekly_and_monthly_reviews_default_to_the_current_period(env: Env) -> None:
    # Given a day of the current week with one finished job
    svc = env.app.extensions["nanoedit"]
    svc.recorder.job_finished("j1", status="succeeded", error_code=None, latency_s=1.0)

    # When the current week and month are asked for, and a named one
    week = env.client.get("/v1/monitoring/report", query_string={"period": "weekly"}).json
    month = env.client.get("/v1/monitoring/report", query_string={"period": "monthly"}).json
    named = env.client.get("/v1/monitoring/report", query_string={"period": "weekly", "period_id": "2023-W45"}).json

    # Then the current ones hold today's job and say they are not complete; the named one is last week
    assert week["period_id"] == "2023-W46" and week["complete"] is False
    assert week["totals"]["jobs_finished"] == 1 and week["first_day"] == "2023-11-13"
    assert month["period_id"] == "2023-11" and month["totals"]["jobs_finished"] == 1
    assert named["period_id"] == "2023-W45" and named["complete"] is True
    assert named["totals"]["jobs_finished"] == 0 and named["trends"]["jobs_finished"]["current"] == 0


@pytest.mark.parametrize("query", [
    {"period": "weekly", "period_id": "2025-W53"},  # 2025 has 52 ISO weeks
    {"period": "weekly", "period_id": "2023-11"},
    {"period": "monthly", "period_id": "2023-13"},
    {"period": "latest", "period_id": "2023-W45"},  # period_id goes with weekly or monthly only
    {"period": "yearly"},
])
def test_a_period_id_that_names_no_period_is_400(env: Env, query: dict[str, str]) -> None:
    error(env.client.get("/v1/monitoring/report", query_string=query), 400, "invalid_request")


def test_cli_weekly_and_monthly(server: Server, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert main(["--url", server.url, "report", "--weekly"]) == 0
    assert json.loads(capsys.readouterr().out)["period"] == "weekly"
    assert main(["--url", server.url, "report", "--monthly", "2024-02"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["period_id"] == "2024-02" and out["last_day"] == "2024-02-29"
    assert main(["--url", server.url, "report", "--weekly", "2024-W99"]) != 0
