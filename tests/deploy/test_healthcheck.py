"""deploy/healthcheck.py: the container liveness check of each Procfile process (image HEALTHCHECK, compose,
Kubernetes exec probes). Web asks /healthz, worker pools their metrics port (found on their Procfile line), beat
its Redis heartbeat; a Redis outage never makes beat unhealthy."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.clock import SystemClock
from shared.liveness import WorkerRegistry
from tests.support.stack import Proc, RedisServer, free_port, make_stack, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
if str(DEPLOY) not in sys.path:  # deploy/*.py are scripts run from the repo root, not a package
    sys.path.insert(0, str(DEPLOY))
import healthcheck  # noqa: E402

PREFIX = "hc-test"


class _Answer(http.server.BaseHTTPRequestHandler):
    status_by_path: dict[str, int] = {}

    def do_GET(self) -> None:
        status = self.status_by_path.get(self.path, 404)
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[int, dict[str, int]]]:
    """A local HTTP server on a free port answering the configured status per path (404 otherwise)."""
    statuses: dict[str, int] = {}
    handler = type("Handler", (_Answer,), {"status_by_path": statuses})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], statuses
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_web_is_healthy_while_healthz_answers_200(server: tuple[int, dict[str, int]]) -> None:
    # Given an API port answering /healthz
    port, statuses = server
    statuses["/healthz"] = 200

    # When / Then
    healthy, why = healthcheck.check("web", {"NANOEDIT_PORT": str(port)})
    assert healthy, why
    statuses["/healthz"] = 503
    assert healthcheck.check("web", {"NANOEDIT_PORT": str(port)})[0] is False


def test_web_is_unhealthy_when_nothing_listens() -> None:
    healthy, why = healthcheck.check("web", {"NANOEDIT_PORT": str(free_port())})

    assert not healthy and "refused" in why.lower()


def test_a_worker_pool_is_checked_on_the_metrics_port_its_procfile_line_sets(
        server: tuple[int, dict[str, int]]) -> None:
    # Given the generate pool's metrics port moved by its Procfile variable
    port, statuses = server
    statuses["/metrics"] = 200
    env = {"NANOEDIT_GENERATE_METRICS_PORT": str(port)}

    # Then the check asks that port, and the Procfile's default when the variable is unset or empty
    assert healthcheck.check("generate", env) == (True, f"http://127.0.0.1:{port}/metrics: HTTP 200")
    assert healthcheck.process_env("generate", {"NANOEDIT_GENERATE_METRICS_PORT": ""})["NANOEDIT_METRICS_PORT"] \
        == "9102"
    assert healthcheck.check("preprocess", {"NANOEDIT_PREPROCESS_METRICS_PORT": str(free_port())})[0] is False


def test_the_script_exits_0_healthy_1_unhealthy_2_for_an_unknown_process(server: tuple[int, dict[str, int]]) -> None:
    port, statuses = server
    statuses["/healthz"] = 200
    env = {k: v for k, v in os.environ.items() if not k.startswith("NANOEDIT_")}

    def run(name: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "deploy/healthcheck.py", name], cwd=ROOT, env={**env, **extra},
                              capture_output=True, text=True, timeout=60)

    assert run("web", NANOEDIT_PORT=str(port)).returncode == 0
    assert run("web", NANOEDIT_PORT=str(free_port())).returncode == 1
    bad = run("web", NANOEDIT_PORT="eighty")
    assert bad.returncode == 1 and "SettingsError" in bad.stderr
    assert run("nosuch").returncode == 2


@pytest.fixture
def beat_env(redis_server: RedisServer, redis_db: redis.Redis) -> dict[str, str]:
    return {"NANOEDIT_REDIS_URL": redis_server.url(1), "NANOEDIT_REDIS_PREFIX": PREFIX,
            "NANOEDIT_WORKER_HEARTBEAT_S": "10"}


def test_beat_is_healthy_while_its_heartbeat_is_fresh(beat_env: dict[str, str], redis_db: redis.Redis) -> None:
    # Given no heartbeat yet: unhealthy
    healthy, why = healthcheck.check("beat", beat_env)
    assert not healthy and "missing" in why

    # When beat writes one: healthy
    WorkerRegistry(redis_db, PREFIX, SystemClock(), 10).record_beat()
    assert healthcheck.check("beat", beat_env)[0] is True

    # When it is older than the liveness window (max(60 s, 3 intervals)): unhealthy again
    redis_db.set(f"{PREFIX}:beat:heartbeat", repr(time.time() - 120))
    healthy, why = healthcheck.check("beat", beat_env)
    assert not healthy and "120 s old" in why


def test_beat_is_not_judged_while_redis_is_unreachable() -> None:
    healthy, why = healthcheck.check("beat", {"NANOEDIT_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})

    assert healthy and "not judged" in why


@pytest.mark.e2e
def test_a_real_worker_started_by_procfile_run_passes_then_fails_after_it_stops(
        redis_server: RedisServer, redis_db: redis.Redis, tmp_path: Path) -> None:
    # Given the webhooks pool started exactly as a container does: procfile.py run webhooks
    stack = make_stack(redis_server.url(1), tmp_path)
    port = free_port()
    env = {**stack.env, "NANOEDIT_WEBHOOKS_METRICS_PORT": str(port),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log_path = tmp_path / "webhooks.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen([sys.executable, "deploy/procfile.py", "run", "webhooks"], cwd=ROOT, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    worker = Proc("webhooks", popen, log_path)
    try:
        # When it is ready, the check passes on the port its Procfile line set
        def healthy() -> bool:
            assert popen.poll() is None, worker.log()[-3000:]
            return healthcheck.check("webhooks", env)[0]

        wait_for(healthy, 90, "the webhooks worker's metrics port", 0.5)
    finally:
        worker.stop()

    # Then, once stopped, it fails
    assert healthcheck.check("webhooks", env)[0] is False
