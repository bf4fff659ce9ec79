"""Scrapes of the real processes: the API's /metrics under gunicorn, and one worker instance's endpoint that
serves all of its prefork children. promtool lints both (it skips locally only when absent; CI installs it)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from monitoring.metrics import metric_names
from tests.e2e.test_pipeline import submit, wait_done
from tests.monitoring.test_metrics import sample
from tests.support.stack import RedisServer, Stack, free_port, require_binary, start_stack, wait_for

pytestmark = pytest.mark.e2e
METRICS_DB = 12


def promtool_check_metrics(text: str) -> None:
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"


def scrape(url: str) -> str:
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return resp.text


def test_api_metrics_pass_promtool_after_real_jobs(stack: Stack) -> None:
    # Given a few jobs that ran through the real gunicorn API and workers
    for instruction in ("make it black and white", "rotate 90 degrees", "make it brighter"):
        done = wait_done(stack, submit(stack, ["chelsea.png"], instruction)["id"])
        assert done["status"] == "succeeded", done
    # When Prometheus scrapes the API
    text = scrape(f"{stack.url}/metrics")
    # Then the exposition is lint-clean, has the web workers' samples and the fleet state, and nothing unknown
    promtool_check_metrics(text)
    assert (sample(text, "nanoedit_jobs_submitted_total", operation="edit") or 0) >= 3
    assert sample(text, "nanoedit_http_requests_total", route="/v1/jobs/<job_id>", method="GET", status="200")
    assert (sample(text, "nanoedit_workers_live", queue="generate") or 0) >= 1
    assert sample(text, "nanoedit_redis_up") == 1
    assert sample(text, "nanoedit_circuit_state", state="closed") == 1
    assert sample(text, "nanoedit_beat_heartbeat_age_seconds") is not None
    exposed = {line.split(" ", 3)[2] for line in text.splitlines() if line.startswith("# TYPE nanoedit_")}
    assert exposed <= set(metric_names())
    web_dirs = list((stack.data_dir / "prometheus").glob("web-*"))
    assert len(web_dirs) == 1 and any(web_dirs[0].glob("counter_*.db"))  # the gunicorn workers' files


@pytest.fixture
def metrics_stack(redis_server: RedisServer,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    """Own Redis database; the generate instance (-c 3, 0.3 s per call so calls overlap) serves its metrics. It runs
    the prefork pool (the Procfile's generate line uses gevent, one process): merging the samples of several
    children into one endpoint is what is tested here, and an operator may run any pool with `-P`."""
    port = free_port()
    s = start_stack(redis_server.url(METRICS_DB), tmp_path_factory.mktemp("metrics"), preprocess=2, generate=(3,),
                    generate_env={"NANOEDIT_METRICS_PORT": str(port)}, NANOEDIT_LOCAL_DELAY_S="0.3",
                    NANOEDIT_CACHE_TTL_S="0", generate_pool="prefork")
    yield s, port
    s.stop()


def test_worker_instance_endpoint_counts_the_work_of_every_child(metrics_stack: tuple[Stack, int]) -> None:
    s, port = metrics_stack
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: _up(url), 30, "the generate instance's metrics endpoint", 0.2)
    # Given 12 one-output jobs submitted at once to a generate instance with 3 prefork children
    n = 12
    ids = [submit(s, ["coffee.png"], f"rotate {90 * (i % 3 + 1)} degrees")["id"] for i in range(n)]
    for job_id in ids:
        assert wait_done(s, job_id)["status"] == "succeeded"
    # When the instance's one endpoint is scraped
    text = wait_for(lambda: _scraped_with(url, n), 15, "every job in the generate instance's metrics")
    # Then it counts every provider call and every finished job, whichever child did the work
    assert sample(text, "nanoedit_provider_call_duration_seconds_count", outcome="succeeded") == n
    assert sample(text, "nanoedit_jobs_finished_total", status="succeeded", operation="edit") == n
    assert sample(text, "nanoedit_job_stage_duration_seconds_count", stage="generate") == n
    assert sample(text, "nanoedit_limiter_wait_seconds_count", result="granted") == n
    assert sample(text, "nanoedit_provider_call_duration_seconds_bucket", outcome="succeeded", le="0.25") == 0
    assert sample(text, "nanoedit_tasks_in_progress", task="nanoedit.generate") == 0
    children = _pids_with_samples(s.data_dir, "generate@")
    assert len(children) >= 2, f"the work should have spread over the children: {children}"
    # Fleet state is the API's job alone: a worker instance never repeats it
    assert sample(text, "nanoedit_queue_depth", queue="generate") is None
    promtool_check_metrics(text)
    # And the API's scrape shows the submissions, not the worker-side samples
    api_text = scrape(f"{s.url}/metrics")
    assert sample(api_text, "nanoedit_jobs_submitted_total", operation="edit") == n
    assert sample(api_text, "nanoedit_provider_call_duration_seconds_count", outcome="succeeded") is None


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _scraped_with(url: str, n: int) -> str | None:
    text = scrape(url)
    finished = sample(text, "nanoedit_jobs_finished_total", status="succeeded", operation="edit")
    return text if finished == n else None


def _pids_with_samples(data_dir: Path, node_prefix: str) -> set[str]:
    dirs = [d for d in (data_dir / "prometheus").iterdir() if d.name.startswith(node_prefix)]
    assert len(dirs) == 1, dirs
    return {p.stem.rsplit("_", 1)[1] for p in dirs[0].glob("histogram_*.db")}


def test_each_process_tree_has_its_own_directory_and_beat_none(stack: Stack) -> None:
    dirs = sorted(d.name.split("@")[0] for d in (stack.data_dir / "prometheus").iterdir())

    assert dirs == ["generate", "preprocess", f"web-{stack.port}", "webhooks"]
