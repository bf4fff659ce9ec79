"""Real processes for tests: a private redis-server, Celery worker instances, beat and the gunicorn API.

Fixtures in tests/conftest.py use these. Services that are missing skip the test locally but fail it in CI
(CI=true), so a green CI run always means the real thing ran.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from shared.redis_conn import redis_client
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "whsec_" + "dGVzdC13ZWJob29rLXNlY3JldC0zMi1ieXRlcyEhISE="  # base64 of a fixed test secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required in CI but not installed")
    pytest.skip(f"{name} not installed")


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


class RedisServer:
    def __init__(self) -> None:
        self.binary = require_binary("redis-server")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="nanoedit-redis-")
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir, "--save", "",
             "--appendonly", "no", "--maxmemory-policy", "noeviction", "--databases", "32",
             "--hash-max-listpack-value", "1024"],  # as deploy/up.sh configures the private Redis
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_for(lambda: _ping(client), 10, "redis-server")

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process and its children (each Proc runs in its own session)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.kill_group(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill_group(signal.SIGKILL)
                self.popen.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Stack:
    """A full nanoedit deployment on one Redis database: API + preprocess/generate workers (+ beat)."""

    env: dict[str, str]
    data_dir: Path
    port: int
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Proc:
        log_path = self.data_dir / f"{name}.log"
        fh = open(log_path, "ab")  # noqa: SIM115  (owned by the child for its lifetime)
        popen = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env={**self.env, **(extra_env or {})},
                                 stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, log_path)
        self.procs[name] = proc
        return proc

    def start_worker(self, queue: str, concurrency: int, name: str | None = None,
                     extra_env: dict[str, str] | None = None, pool_type: str | None = None) -> Proc:
        """One worker instance for `queue`, with the Procfile's pool type unless `pool_type` says otherwise."""
        name = name or queue
        if queue == "preprocess":  # as in the Procfile: preprocess instances also do the upkeep
            queue = "preprocess,maintenance"
        # As in the Procfile: webhooks on a thread pool, generate on gevent (workers/concurrency.py).
        pool_type = pool_type or {"webhooks": "threads", "generate": "gevent"}.get(queue, "prefork")
        pool = ["-P", pool_type]
        if pool_type == "gevent":  # as in the Procfile (docs/operations.md, "Running in production": why)
            pool += ["--prefetch-multiplier", "4"]
        return self.spawn(name, ["celery", "-A", "workers.celery_app", "worker", "-Q", queue, "-n",
                                 f"{name}@%h", "-c", str(concurrency), *pool, "--without-mingle", "--without-gossip",
                                 "--loglevel", "INFO"], extra_env)

    def start_beat(self) -> Proc:
        return self.spawn("beat", ["celery", "-A", "workers.celery_app", "beat", "-s",
                                   str(self.data_dir / "celerybeat-schedule"), "--loglevel", "INFO"])

    def start_api(self) -> Proc:
        return self.spawn("web", ["gunicorn", "--config", "deploy/gunicorn.conf.py", "api.wsgi:app"])

    def wait_live(self, queues: tuple[str, ...] = ("preprocess", "generate"), timeout_s: float = 60) -> None:
        r = redis_client(Settings.from_env(self.env))  # as the processes connect: TLS and Sentinel included
        prefix = self.env.get("NANOEDIT_REDIS_PREFIX", "nanoedit")

        def live() -> bool:
            self._check_alive()
            now = time.time()
            return all(r.zrangebyscore(f"{prefix}:workers:{q}", now - 30, "+inf") for q in queues)

        wait_for(live, timeout_s, f"workers on {queues}", 0.2)

    def wait_api(self, timeout_s: float = 30) -> None:
        def up() -> bool:
            self._check_alive()
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(up, timeout_s, "the API", 0.1)

    def _check_alive(self) -> None:
        for p in self.procs.values():
            if p.popen.poll() is not None and p.name in ("web",):
                raise RuntimeError(f"{p.name} exited early:\n{p.log()[-3000:]}")

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.log()[-4000:]}" for n, p in self.procs.items())


def make_stack(redis_url: str, data_dir: Path, **overrides: str) -> Stack:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NANOEDIT_", "GEMINI_", "GOOGLE_API"))}
    env.update({
        "NANOEDIT_REDIS_URL": redis_url,
        "NANOEDIT_DATA_DIR": str(data_dir),
        "NANOEDIT_PORT": str(port),
        "NANOEDIT_HOST": "127.0.0.1",
        "NANOEDIT_PROVIDER": "local",
        "NANOEDIT_WORKER_HEARTBEAT_S": "1",
        "NANOEDIT_RECONCILE_INTERVAL_S": "2",
        "NANOEDIT_WEB_WORKERS": "2",
        "PYTHONUNBUFFERED": "1",
        "NANOEDIT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        # Test receivers listen on 127.0.0.1 (any port): allowed explicitly, as an operator would.
        "NANOEDIT_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "NANOEDIT_WEBHOOK_RETRY_BASE_S": "0.2",
        "NANOEDIT_WEBHOOK_DISPATCH_INTERVAL_S": "1",
    })
    env.update(overrides)
    data_dir.mkdir(parents=True, exist_ok=True)
    return Stack(env=env, data_dir=data_dir, port=port)


@contextlib.contextmanager
def starting(s: Stack) -> Iterator[Stack]:
    """Start processes of `s` inside; on a start-up failure print every process log and stop what was started."""
    try:
        yield s
    except Exception:
        print(s.logs())
        s.stop()
        raise


def start_stack(redis_url: str, data_dir: Path, *, preprocess: int = 1, generate: tuple[int, ...] = (2,),
                beat: bool = False, flush: bool = True, generate_env: dict[str, str] | None = None,
                webhooks: int = 2, generate_pool: str | None = None, **env: str) -> Stack:
    """A running stack: API, one preprocess instance, one generate instance per entry of `generate` (named
    gen1, gen2, ... when there are several), one webhooks instance (`webhooks` threads; 0 = none), optionally
    beat. Flushes its Redis database first. On a start-up failure it prints every process log and stops what it
    started."""
    s = make_stack(redis_url, data_dir, **env)
    if flush:
        redis.Redis.from_url(redis_url).flushdb()
    with starting(s):
        s.start_worker("preprocess", preprocess)
        for n, concurrency in enumerate(generate, start=1):
            s.start_worker("generate", concurrency, name="generate" if len(generate) == 1 else f"gen{n}",
                           extra_env=generate_env, pool_type=generate_pool)
        if webhooks:
            s.start_worker("webhooks", webhooks)
        if beat:
            s.start_beat()
        s.start_api()
        s.wait_api()
        s.wait_live()
    return s


def gemini_env(base_url: str, api_key: str = "test-key-not-real", **env: str) -> dict[str, str]:
    """Environment for a stack on the gemini provider pointed at a fake Gemini server."""
    return {"GEMINI_API_KEY": api_key, "NANOEDIT_PROVIDER": "auto", "NANOEDIT_GEMINI_BASE_URL": base_url,
            "NANOEDIT_RETRY_BASE_S": "0.05", **env}


def submit_until_generating(stack: Stack, photo: bytes, timeout_s: float = 60) -> str:
    """Submit a one-output job and wait until its first generate task has started (its delivery counter, the
    poison guard's, exists): the id of a job whose provider call is in flight."""
    r = redis.Redis.from_url(stack.env["NANOEDIT_REDIS_URL"], decode_responses=True)
    resp = requests.post(f"{stack.url}/v1/jobs", timeout=30, data={"instruction": "grayscale"},
                         files=[("image", ("a.png", photo))])
    assert resp.status_code == 202, resp.text
    job_id = str(resp.json()["id"])
    wait_for(lambda: r.get(f"{stack.env.get('NANOEDIT_REDIS_PREFIX', 'nanoedit')}:deliveries:{job_id}.generate.0.1"),
             timeout_s, "the generate task to start", 0.05)
    return job_id
