"""System metrics (monitoring/system_metrics.py): a real process tree's CPU and RSS through psutil, the memory limit
(cgroup or host), real Redis INFO, the fleet's samples in Redis, the default memory rules, the API's /metrics
(promtool), and the whole stack reporting its processes through heartbeats."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import psutil
import pytest
import redis
import requests

from api import create_app
from api.system import WebSampling
from monitoring.alerts import build_engine, load_rules
from monitoring.alerts.notifier import Notifier
from monitoring.system_metrics import ProcessSampler, ProcessStats, memory_limit, redis_stats, system_section
from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings
from tests.monitoring.test_metrics import sample
from tests.monitoring.test_prometheus_e2e import promtool_check_metrics
from tests.support.stack import Stack, wait_for

T0 = 1_700_000_000.0
MB = 1024 * 1024
# A parent holding 30 MB that starts a child holding 40 MB and burning CPU; both then wait to be killed.
TREE = """
import subprocess, sys, time
ballast = bytearray(30 * 1024 * 1024)
child = subprocess.Popen([sys.executable, "-c",
    "b = bytearray(40 * 1024 * 1024)\\nimport time\\nend = time.time() + 60\\nwhile time.time() < end: pass"])
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait(10)


def test_a_process_tree_sample_counts_its_children(tree: subprocess.Popen[str]) -> None:
    # Given a parent (30 MB) with a busy child (40 MB)
    sampler = ProcessSampler("generate", FakeClock(T0), pid=tree.pid, host="h1")
    wait_for(lambda: sampler.sample().processes == 2, 20, "the child process to start")
    # When it is sampled twice (psutil's CPU share covers the time between samples)
    wait_for(lambda: sampler.sample().cpu_percent > 20, 20, "the busy child's CPU to show")
    s = sampler.sample()
    # Then the sample is the whole tree's, compared with the memory limit it names
    assert (s.role, s.pid, s.host, s.at) == ("generate", tree.pid, "h1", T0)
    assert s.processes == 2 and s.rss_bytes >= 70 * MB
    assert s.limit_source in ("cgroup", "host") and s.memory_limit_bytes > s.rss_bytes
    assert s.memory_ratio == round(s.rss_bytes / s.memory_limit_bytes, 4)


def test_the_memory_limit_is_the_cgroups_when_set_else_the_hosts(tmp_path: Path) -> None:
    host = psutil.virtual_memory().total
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    assert memory_limit((v2, v1)) == (host, "host")  # no cgroup files
    v2.write_text("max\n")
    v1.write_text(str(1 << 62))  # cgroup v1's "unlimited"
    assert memory_limit((v2, v1)) == (host, "host")
    v2.write_text(str(512 * MB))
    assert memory_limit((v2, v1)) == (512 * MB, "cgroup")


def test_redis_stats_compare_with_maxmemory_or_the_redis_host(redis_db: redis.Redis) -> None:
    before = redis_db.config_get("maxmemory")["maxmemory"]
    try:
        redis_db.config_set("maxmemory", 0)
        unlimited = redis_stats(redis_db)
        assert unlimited.used_memory > 0 and unlimited.connected_clients >= 1 and unlimited.ops_per_sec >= 0
        assert unlimited.limit_source == "total_system_memory" and unlimited.memory_limit_bytes
        redis_db.config_set("maxmemory", 512 * MB)
        limited = redis_stats(redis_db)
        assert limited.limit_source == "maxmemory" and limited.maxmemory == 512 * MB
        assert limited.memory_ratio == round(limited.used_memory / (512 * MB), 4)
    finally:
        redis_db.config_set("maxmemory", before)


def test_fleet_samples_age_out_and_are_pruned() -> None:
    clock = FakeClock(T0)
    r = fakeredis.FakeRedis(decode_responses=True)
    stats = ProcessStats(r, "t", clock, heartbeat_s=10)
    stats.record(ProcessSampler("web", clock).sample())
    assert [p.role for p in stats.live()] == ["web"]
    clock.advance(31)  # older than three heartbeat intervals: not live, still stored
    assert stats.live() == [] and r.hlen(stats.key) == 1
    clock.advance(3600)
    assert stats.live() == [] and r.hlen(stats.key) == 0
    # And a Redis without INFO (fakeredis) leaves nulls in the report, which the memory rules treat as no data
    section = system_section(stats, r)
    assert section["redis"]["memory_ratio"] is None and section["process_memory_ratio_max"] is None


def memory_report(redis_ratio: float | None, process_ratio: float | None) -> dict[str, Any]:
    return {"system": {"redis": {"memory_ratio": redis_ratio}, "process_memory_ratio_max": process_ratio,
                       "processes": []}}


@pytest.mark.parametrize(("redis_ratio", "process_ratio", "firing"), [
    (0.5, 0.5, set()),
    (0.85, 0.5, {"redis_memory_high"}),
    (0.95, 0.5, {"redis_memory_high", "redis_memory_critical"}),
    (0.5, 0.85, {"process_memory_high"}),
    (None, 0.95, {"process_memory_high", "process_memory_critical"}),
])
def test_default_memory_rules_warn_at_80_and_page_at_90_percent(redis_ratio: float | None,
                                                                process_ratio: float | None,
                                                                firing: set[str]) -> None:
    # Given the built-in rules and a memory level held for ten minutes
    clock = FakeClock(T0)
    r = fakeredis.FakeRedis(decode_responses=True)
    memory = {r.name: r for r in load_rules().rules if r.group == "memory"}
    assert {n: r.severity for n, r in memory.items()} == {
        "redis_memory_high": "medium", "redis_memory_critical": "critical",
        "process_memory_high": "medium", "process_memory_critical": "critical"}
    engine = build_engine(Settings(), r, clock, notifier=Notifier([], clock=FakeClock()))
    for _ in range(21):
        engine.evaluate(memory_report(redis_ratio, process_ratio))
        clock.advance(30)
    # Then exactly the expected memory alerts fire
    states = engine.store.states()
    assert {i for i in memory if states[i].state == "firing"} == firing


def test_api_metrics_expose_process_trees_and_redis_and_pass_promtool(redis_db: redis.Redis,
                                                                     tmp_path: Path) -> None:
    # Given the API on a real Redis, and this process recorded as a web worker (what gunicorn's hook starts)
    settings = Settings(data_dir=tmp_path, redis_prefix="sysm")
    clock = FakeClock(T0)
    app = create_app(settings, clock=clock, redis_conn=redis_db, blobs=MemoryBlobStore(),
                     enqueuer=RecordingEnqueuer())
    client = app.test_client()
    sampling = WebSampling(settings, clock, redis_db)
    sampling.record_once()
    # When /metrics is scraped
    text = client.get("/metrics").get_data(as_text=True)
    # Then it has this process tree's CPU/RSS and Redis's memory and clients, lint-clean
    promtool_check_metrics(text)
    labels = {"role": "web", "pid": str(psutil.Process().pid)}
    assert (sample(text, "nanoedit_process_resident_memory_bytes", **labels) or 0) > 10 * MB
    assert sample(text, "nanoedit_process_memory_ratio", **labels) is not None
    assert (sample(text, "nanoedit_redis_used_memory_bytes") or 0) > 0
    assert (sample(text, "nanoedit_redis_connected_clients") or 0) >= 1
    assert sample(text, "nanoedit_redis_memory_ratio") is not None
    # And a worker that exits removes its sample at once
    sampling.stop()
    after = client.get("/metrics").get_data(as_text=True)
    assert sample(after, "nanoedit_process_resident_memory_bytes", **labels) is None


@pytest.mark.e2e
def test_every_process_of_the_stack_reports_itself(stack: Stack) -> None:
    # Given the running stack (web, beat, preprocess+maintenance, generate, webhooks; heartbeats every second)
    want = {"web", "beat", "preprocess+maintenance", "generate", "webhooks"}

    def roles(text: str) -> set[str]:
        return {line.split('role="', 1)[1].split('"', 1)[0] for line in text.splitlines()
                if line.startswith("nanoedit_process_resident_memory_bytes{")}

    def scrape() -> str:
        resp = requests.get(f"{stack.url}/metrics", timeout=10)
        assert resp.status_code == 200
        return resp.text

    # When the API is scraped, Then every role is there with its memory, and promtool accepts it
    wait_for(lambda: want <= roles(scrape()), 30, "every process role in /metrics", 0.5)
    promtool_check_metrics(scrape())

    # And the health report (beat, every NANOEDIT_REPORT_INTERVAL_S) carries the same fleet and Redis
    def report_system() -> dict[str, Any] | None:
        resp = requests.get(f"{stack.url}/v1/monitoring/report", timeout=10)
        system = resp.json().get("system") if resp.status_code == 200 else None
        return system if system and want <= {p["role"] for p in system["processes"]} else None

    wait_for(lambda: report_system() is not None, 90, "a report with every process", 1.0)
    system = report_system()
    assert system is not None
    assert all(p["rss_bytes"] > 0 and p["pid"] > 0 and p["host"] for p in system["processes"])
    assert system["redis"]["used_memory"] > 0 and system["redis"]["memory_ratio"] is not None
    assert 0 < system["process_memory_ratio_max"] < 1
