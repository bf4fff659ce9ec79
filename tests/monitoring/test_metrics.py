"""Prometheus metrics: multiprocess totals, directory set-up per role, the catalogue, the HTTP and Redis parts.

The multiprocess tests run in a fresh interpreter: prometheus-client picks its mode when first imported, and
this pytest process imported it long ago in plain (single-process) mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fakeredis
import pytest
import redis
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from api import create_app
from monitoring import metrics, multiproc
from monitoring.alerts.model import FIRING, RESOLVED, AlertState
from monitoring.alerts.store import AlertStore
from monitoring.exposition import registry, render
from monitoring.state_collector import RedisStateCollector
from shared.blobs import MemoryBlobStore
from shared.circuit import CircuitBreaker
from shared.clock import FakeClock
from shared.jobs.store import JobStore
from shared.limiter import FleetLimiter
from shared.liveness import WorkerRegistry
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

# N forked children each record K provider calls and K finished jobs, then the parent scrapes.
CHILDREN_SCRIPT = textwrap.dedent("""
    import json, multiprocessing, os, sys
    from pathlib import Path
    n, k, mode, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    from monitoring import multiproc
    if mode == "multiprocess":
        multiproc.activate(path, wipe=True)  # before prometheus_client is imported, as the entry points do
    from monitoring import metrics
    from monitoring.exposition import registry, render

    def child(out):
        for _ in range(k):
            metrics.PROVIDER_CALL_DURATION.labels("succeeded").observe(0.3)
            metrics.JOBS_FINISHED.labels("succeeded", "edit", "none", "none").inc()
        # what this child alone would serve if it had its own port
        own = metrics.JOBS_FINISHED.labels("succeeded", "edit", "none", "none")._value.get()
        out.put(own)

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=child, args=(out,)) for _ in range(n)]
    for p in procs:
        p.start()
    own = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    sys.stdout.write(json.dumps({"own": own, "scrape": render(registry())[0].decode()}))
""")


def run_children(tmp_path: Path, n: int, k: int, mode: str) -> tuple[list[float], str]:
    env = {k_: v for k_, v in os.environ.items() if k_ != multiproc.ENV}
    out = subprocess.run([sys.executable, "-c", CHILDREN_SCRIPT, str(n), str(k), mode, str(tmp_path / "prom")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    body = json.loads(out.stdout)
    return body["own"], body["scrape"]


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_multiprocess_scrape_equals_the_total_of_all_children(tmp_path: Path) -> None:
    # Given 4 forked children that each record 250 provider calls and 250 finished jobs
    n, k = 4, 250
    # When the parent scrapes the shared multiprocess directory
    _, scrape = run_children(tmp_path, n, k, "multiprocess")
    # Then the scraped totals are N × K, not one child's share
    assert sample(scrape, "nanoedit_jobs_finished_total", status="succeeded") == n * k
    assert sample(scrape, "nanoedit_provider_call_duration_seconds_count", outcome="succeeded") == n * k
    assert sample(scrape, "nanoedit_provider_call_duration_seconds_bucket", outcome="succeeded", le="0.5") == n * k
    assert sample(scrape, "nanoedit_provider_call_duration_seconds_bucket", outcome="succeeded", le="0.25") == 0
    assert len(list((tmp_path / "prom").glob("counter_*.db"))) == n  # one file per child pid


def test_without_multiprocess_mode_each_process_sees_only_its_own_share(tmp_path: Path) -> None:
    """The trap this design avoids: in plain mode each child counts alone, the parent sees nothing."""
    n, k = 4, 250
    own, scrape = run_children(tmp_path, n, k, "plain")
    assert own == [k] * n  # a child serving its own registry would report 1/N of the work
    assert sample(scrape, "nanoedit_jobs_finished_total", status="succeeded") is None


def test_dead_process_live_gauges_are_pruned_but_counters_kept(tmp_path: Path) -> None:
    # Given the files a killed process left behind: a live gauge (requests in flight) and a counter
    d = tmp_path / "prom"
    d.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (d / f"gauge_livesum_{dead.pid}.db").write_bytes(b"")
    (d / f"counter_{dead.pid}.db").write_bytes(b"")
    (d / f"gauge_livesum_{os.getpid()}.db").write_bytes(b"")
    # When a scrape prunes the directory
    pruned = multiproc.prune_dead(d)
    # Then only the dead process's live gauge is gone
    assert pruned == 1
    assert sorted(p.name for p in d.iterdir()) == sorted([f"counter_{dead.pid}.db",
                                                          f"gauge_livesum_{os.getpid()}.db"])


def test_activate_wipes_its_own_dir_and_removes_dead_siblings_only(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(multiproc.ENV, "")  # restored (removed) after the test: activate() sets it
    root = tmp_path / "prometheus"
    mine, dead_sibling, live_sibling = root / "generate@h", root / "generate-1@h", root / "web-8000"
    for d in (mine, dead_sibling, live_sibling):
        d.mkdir(parents=True)
        (d / "counter_1.db").write_bytes(b"x")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = __import__("socket").gethostname()
    (dead_sibling / multiproc.OWNER).write_text(f"{host} {gone.pid}\n")
    (live_sibling / multiproc.OWNER).write_text(f"{host} {os.getpid()}\n")

    multiproc.activate(mine, wipe=True)

    assert os.environ[multiproc.ENV] == str(mine)
    assert [p.name for p in mine.iterdir()] == [multiproc.OWNER]
    assert not dead_sibling.exists()
    assert (live_sibling / "counter_1.db").exists()


@pytest.mark.parametrize(("argv", "expected"), [
    (["/x/site-packages/celery/__main__.py", "-A", "workers.celery_app", "worker", "-Q", "generate", "-n",
      "generate@%h", "-c", "3"], ("worker", "generate@{host}")),
    (["/venv/bin/celery", "-A", "workers.celery_app", "worker", "--hostname=pre-7@box"], ("worker", "pre-7@box")),
    (["/venv/bin/celery", "-A", "workers.celery_app", "worker", "-npre@%h"], ("worker", "pre@{host}")),
    (["/venv/bin/celery", "-A", "workers.celery_app", "worker"], ("worker", "celery@{host}")),
    (["/venv/bin/celery", "-A", "workers.celery_app", "beat", "-s", "x"], ("beat", None)),
    (["/venv/bin/pytest", "-q"], ("", None)),
])
def test_celery_command_line_gives_the_instance_name(argv: list[str], expected: tuple[str, str | None]) -> None:
    host = __import__("socket").gethostname()
    command, node = expected
    assert multiproc.celery_command(argv) == (command, node.format(host=host) if node else None)


def test_catalogue_names_units_and_buckets() -> None:
    names = metrics.metric_names()

    assert all(n.startswith("nanoedit_") for n in names)
    assert all(n.endswith("_total") for n, kind in names.items() if kind == "counter")
    assert all(n.endswith("_seconds") for n, kind in names.items() if kind == "histogram")
    assert metrics.DURATION_BUCKETS[0] == 0.05 and metrics.DURATION_BUCKETS[-1] == 300
    assert set(metrics.DURATION_BUCKETS) <= set(metrics.HTTP_BUCKETS)
    for m in (metrics.JOB_DURATION, metrics.PROVIDER_CALL_DURATION, metrics.LIMITER_WAIT):
        assert tuple(m._upper_bounds[:-1]) == metrics.DURATION_BUCKETS  # type: ignore[attr-defined]


DEPTHS = {"preprocess": 4, "generate": 2, "maintenance": 0}


# -- the API's /metrics --------------------------------------------------------------------------------------
def make_app(settings: Settings, r: redis.Redis) -> Flask:
    return create_app(settings, redis_conn=r, blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer(depths=DEPTHS))


def scrape(app: Flask, **headers: str) -> str:
    resp = app.test_client().get("/metrics", headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"].startswith("text/plain")
    return resp.get_data(as_text=True)


def test_http_requests_are_labelled_by_route_template_not_path(tmp_path: Path) -> None:
    app = make_app(Settings(data_dir=tmp_path), fakeredis.FakeRedis(decode_responses=True))
    client = app.test_client()
    before = sample(scrape(app), "nanoedit_http_requests_total", route="/v1/jobs/<job_id>", method="GET",
                    status="404") or 0
    # When two different unknown job ids and an unknown route are requested
    client.get(f"/v1/jobs/{'a' * 32}")
    client.get(f"/v1/jobs/{'b' * 32}")
    client.get("/no/such/route/123")
    text = scrape(app)
    # Then they are counted under the route template (one series), never the raw paths
    assert sample(text, "nanoedit_http_requests_total", route="/v1/jobs/<job_id>", method="GET",
                  status="404") == before + 2
    assert sample(text, "nanoedit_http_requests_total", route="unmatched", status="404")
    assert "aaaaaaaa" not in text and "/no/such" not in text
    assert sample(text, "nanoedit_http_request_duration_seconds_count", route="/v1/jobs/<job_id>")


def test_metrics_needs_the_admin_token_when_auth_is_on(tmp_path: Path) -> None:
    app = make_app(Settings(data_dir=tmp_path, api_keys=("k1",), admin_token="admin-secret"),
                   fakeredis.FakeRedis(decode_responses=True))
    client = app.test_client()

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer k1"}).status_code == 403
    assert "nanoedit_redis_up 1.0" in scrape(app, Authorization="Bearer admin-secret")


def test_fleet_state_gauges_come_from_redis_at_scrape_time(tmp_path: Path, redis_db: redis.Redis) -> None:
    # Given two jobs waiting for preprocessing (oldest 90 s), one live generate worker, a fresh beat heartbeat,
    # an open circuit, one limiter lease, two firing alerts and an evaluation 12 s ago in the alert engine
    clock = FakeClock()
    now = clock.now()
    store = JobStore(redis_db, "nanoedit", clock)
    store.mark_waiting("preprocess", "j1", (now - 90) * 1000)
    store.mark_waiting("preprocess", "j2", (now - 10) * 1000)
    liveness = WorkerRegistry(redis_db, "nanoedit", clock, 10)
    redis_db.zadd(liveness.key("generate"), {"generate@h": now - 1})
    redis_db.zadd(liveness.key("preprocess"), {"preprocess@h": now - 3600})  # stale
    redis_db.set(liveness.beat_key, repr(now - 4))
    alerts = AlertStore(redis_db, "nanoedit", clock)
    redis_db.hset(alerts.state_key, mapping={st.id: json.dumps(st.to_dict()) for st in (
        AlertState(id="a", rule="circuit_open", group="provider", severity="high", state=FIRING),
        AlertState(id="b", rule="no_live_worker", group="workers", severity="critical", state=FIRING),
        AlertState(id="c", rule="job_error_rate", group="job_errors", severity="medium", state=RESOLVED))})
    redis_db.set(alerts.last_eval_key, repr(now - 12))
    settings = Settings(data_dir=tmp_path, gemini_concurrency=5)
    limiter = FleetLimiter(redis_db, "nanoedit", settings.limit_config())
    assert limiter.try_acquire("job:0").granted
    breaker = CircuitBreaker(redis_db, "nanoedit", settings.circuit_config(), clock)
    breaker.force("open")
    state = RedisStateCollector(r=redis_db, prefix="nanoedit", clock=clock, jobs=store, liveness=liveness,
                                limiter=limiter, breaker=breaker,
                                queue_depths=RecordingEnqueuer(depths=DEPTHS).queue_depths)
    # When the registry is rendered
    text = render(registry(state))[0].decode()
    # Then every gauge reflects Redis now
    assert sample(text, "nanoedit_queue_waiting_jobs", queue="preprocess") == 2
    assert sample(text, "nanoedit_queue_oldest_age_seconds", queue="preprocess") == pytest.approx(90)
    assert sample(text, "nanoedit_queue_oldest_age_seconds", queue="generate") == 0
    assert sample(text, "nanoedit_queue_depth", queue="preprocess") == 4
    assert sample(text, "nanoedit_workers_live", queue="generate") == 1
    assert sample(text, "nanoedit_workers_live", queue="preprocess") == 0
    assert sample(text, "nanoedit_beat_heartbeat_age_seconds") == pytest.approx(4)
    assert sample(text, "nanoedit_circuit_state", state="open") == 1
    assert sample(text, "nanoedit_circuit_state", state="closed") == 0
    assert sample(text, "nanoedit_limiter_in_flight") == 1
    assert sample(text, "nanoedit_limiter_concurrency_limit") == 5
    assert sample(text, "nanoedit_alerts_firing", severity="critical") == 1
    assert sample(text, "nanoedit_alerts_firing", severity="high") == 1
    assert sample(text, "nanoedit_alerts_firing", severity="medium") == 0
    assert sample(text, "nanoedit_alert_evaluation_age_seconds") == pytest.approx(12)
    assert sample(text, "nanoedit_redis_up") == 1


def test_no_beat_heartbeat_means_no_series_and_no_alert_engine_means_zero(tmp_path: Path,
                                                                          redis_db: redis.Redis) -> None:
    clock = FakeClock()
    settings = Settings(data_dir=tmp_path)
    state = RedisStateCollector(r=redis_db, prefix="nanoedit", clock=clock,
                                jobs=JobStore(redis_db, "nanoedit", clock),
                                liveness=WorkerRegistry(redis_db, "nanoedit", clock, 10),
                                limiter=FleetLimiter(redis_db, "nanoedit", settings.limit_config()),
                                breaker=CircuitBreaker(redis_db, "nanoedit", settings.circuit_config(), clock),
                                queue_depths=None)
    text = render(registry(state))[0].decode()

    assert sample(text, "nanoedit_beat_heartbeat_age_seconds") is None  # absent(): the dead-man's switch
    assert sample(text, "nanoedit_alerts_firing", severity="critical") == 0
    assert sample(text, "nanoedit_alert_evaluation_age_seconds") is None
    assert sample(text, "nanoedit_circuit_state", state="closed") == 1


def test_unreachable_redis_still_answers_the_scrape(tmp_path: Path) -> None:
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))  # nothing on port 1
    settings = Settings(data_dir=tmp_path)
    clock = FakeClock()
    state = RedisStateCollector(r=dead, prefix="nanoedit", clock=clock, jobs=JobStore(dead, "nanoedit", clock),
                                liveness=WorkerRegistry(dead, "nanoedit", clock, 10),
                                limiter=FleetLimiter(dead, "nanoedit", settings.limit_config()),
                                breaker=CircuitBreaker(dead, "nanoedit", settings.circuit_config(), clock),
                                queue_depths=None)
    started = time.monotonic()
    text = render(registry(state))[0].decode()

    assert sample(text, "nanoedit_redis_up") == 0
    assert time.monotonic() - started < 5
