"""`make up` supervises its processes (deploy/up.sh → supervisord, config from deploy/supervise.py).

Run exactly as `make up` runs it (`bash deploy/up.sh`, private Redis, local provider): while jobs are submitted
continuously, the generate and then the preprocess worker instance (Celery main process) is SIGKILLed. The web
process answers throughout, supervisord starts a replacement within RECOVERY_LIMIT_S, every job succeeds, and
SIGINT to up.sh stops every program, supervisord and the private Redis.

Each kill happens at a moment when no task message is on its way to the victim: submissions pause until the
generate instance is running every unfinished job's call (for the generate kill) or no job waits for
preprocessing (for the preprocess kill), and resume 0.5 s after the kill. A message that reaches a consumer the
instant it is killed can be lost: kombu's Redis transport pops it (BRPOP) and records it as unacked only once the
consumer has it. That loss is not what this test is about (supervision is); docs/operations.md "A worker dies"
says how such a job ends. Calls in flight on the killed instance are part of the test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
import requests
from PIL import Image

from tests.support.procs import children
from tests.support.stack import ROOT, free_port, require_binary, wait_for

pytestmark = pytest.mark.e2e

RECOVERY_LIMIT_S = 15.0
TERMINAL = ("succeeded", "failed", "canceled", "partially_succeeded")


def _supervise() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nanoedit_deploy_supervise", ROOT / "deploy" / "supervise.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`: up.sh, supervisord, every program and their children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class UpRun:
    popen: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    redis_port: int
    log_path: Path
    conf: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ctl(self, *args: str) -> str:
        done = subprocess.run([str(ROOT / ".venv" / "bin" / "supervisorctl"), "-c", str(self.conf), *args],
                              capture_output=True, timeout=30, check=False)
        return done.stdout.decode(errors="replace").strip()

    def supervisord_pid(self) -> int:
        return int((self.conf.parent / "supervisord.pid").read_text().strip())

    def main_pid(self, queue_arg: str) -> int | None:
        """The Celery main process run by supervisord whose `-Q` is `queue_arg`."""
        for pid in children(self.supervisord_pid()):
            args = _cmdline(pid)
            if "celery" in args and "-Q" in args and args[args.index("-Q") + 1] == queue_arg:
                return pid
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _tiny_png(n: int) -> bytes:
    """A small image of its own for job `n`: no job is answered from the result cache."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (n % 256, (n // 256) % 256, 40)).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Traffic:
    """Submits a job every `interval_s` (unless paused) and probes /healthz, each on its own thread, until
    stopped."""

    url: str
    interval_s: float = 0.3
    job_ids: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    health_ok: int = 0
    health_failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _go: threading.Event = field(default_factory=threading.Event)
    _posting: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        self._go.set()
        self._threads = [threading.Thread(target=self._submit, daemon=True),
                         threading.Thread(target=self._probe, daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def pause(self) -> None:
        """No new submission from now on (one in progress completes first)."""
        self._go.clear()
        with self._posting:
            pass

    def resume(self) -> None:
        self._go.set()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()
        for t in self._threads:
            t.join(30)

    def _submit(self) -> None:
        n = 0
        while not self._stop.is_set():
            if not self._go.wait(0.1):
                continue
            n += 1
            with self._posting:
                try:
                    resp = requests.post(f"{self.url}/v1/jobs", timeout=30, data={"instruction": "grayscale"},
                                         files=[("image", ("a.png", _tiny_png(n), "image/png"))])
                    if resp.status_code == 202:
                        self.job_ids.append(resp.json()["id"])
                    else:
                        self.refused.append(f"{resp.status_code} {resp.text[:200]}")
                except requests.RequestException as exc:
                    self.refused.append(repr(exc))
            self._stop.wait(self.interval_s)

    def _probe(self) -> None:
        while not self._stop.is_set():
            try:
                resp = requests.get(f"{self.url}/healthz", timeout=10)
                if resp.status_code == 200:
                    self.health_ok += 1
                else:
                    self.health_failures.append(f"{resp.status_code}")
            except requests.RequestException as exc:
                self.health_failures.append(repr(exc))
            self._stop.wait(0.2)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpRun]:
    require_binary("redis-server")
    data_dir = tmp_path / "data"
    port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NANOEDIT_", "GEMINI_", "GOOGLE_API"))}
    env.update({
        "NANOEDIT_DATA_DIR": str(data_dir),
        "NANOEDIT_PORT": str(port),
        "NANOEDIT_REDIS_PORT": str(redis_port),
        # The Procfile's metrics ports default to fixed numbers; other stacks may run on this machine.
        "NANOEDIT_PREPROCESS_METRICS_PORT": str(free_port()),
        "NANOEDIT_GENERATE_METRICS_PORT": str(free_port()),
        "NANOEDIT_WEBHOOKS_METRICS_PORT": str(free_port()),
        "NANOEDIT_WEB_WORKERS": "1",
        "NANOEDIT_PREPROCESS_CONCURRENCY": "1",
        "NANOEDIT_GEMINI_CONCURRENCY": "2",
        "NANOEDIT_WEBHOOK_CONCURRENCY": "1",
        "NANOEDIT_WORKER_HEARTBEAT_S": "1",
        "NANOEDIT_RECONCILE_INTERVAL_S": "2",
        "NANOEDIT_KEY_SUBMISSIONS_PER_MIN": "0",
        "NANOEDIT_CACHE_TTL_S": "0",  # every job goes through the workers
        # Calls in flight when a worker is killed; their messages come back after a short visibility timeout.
        "NANOEDIT_LOCAL_DELAY_S": "0.5",
        "NANOEDIT_VISIBILITY_TIMEOUT_S": "10",
        "PYTHONUNBUFFERED": "1",
    })
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(["bash", "deploy/up.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    run = UpRun(popen, data_dir, port, redis_port, log_path, _supervise().SupervisorPaths.under(data_dir).conf)
    try:
        yield run
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(60)
        for pid in _session_pids(popen.pid):  # whatever is left of this run only (its own session)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(10)
        pidfile = data_dir / "redis" / "redis.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)


def _ready(run: UpRun) -> bool:
    if run.popen.poll() is not None:
        raise RuntimeError(f"up.sh exited early ({run.popen.returncode}):\n{run.log()[-4000:]}")
    try:
        return requests.get(f"{run.url}/readyz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _unfinished(r: redis.Redis, job_ids: list[str]) -> list[str]:
    return [j for j in list(job_ids) if r.hget(f"nanoedit:job:{j}", "status") not in TERMINAL]


def _generate_calls_in_flight(r: redis.Redis, job_ids: list[str]) -> int:
    """Unfinished jobs, when there are some and every one of them has its generate task running; else 0."""
    unfinished = _unfinished(r, job_ids)
    started = [j for j in unfinished if any(True for _ in r.scan_iter(f"nanoedit:deliveries:{j}.generate.*"))]
    return len(unfinished) if unfinished and started == unfinished else 0


def _nothing_before_generate(r: redis.Redis, job_ids: list[str]) -> bool:
    """No job queued for or in preprocessing: no preprocess message is on its way to the worker."""
    return all(r.hget(f"nanoedit:job:{j}", "stage") not in ("queued", "preprocessing")
               for j in _unfinished(r, job_ids))


def _pause_at(traffic: Traffic, predicate: Callable[[], Any], what: str) -> Any:
    """Pause submissions until `predicate` holds and return its value (submissions stay paused); while it does
    not hold within a few seconds, let traffic flow again and retry."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        traffic.pause()
        with contextlib.suppress(TimeoutError):
            return wait_for(predicate, 5, what, 0.02)
        traffic.resume()
        time.sleep(1)
    raise TimeoutError(f"never saw {what}")


def _dump_unfinished(r: redis.Redis, job_ids: list[str]) -> None:
    """What Redis holds about jobs that did not end: the record, its task deliveries, the queues."""
    for j in _unfinished(r, job_ids):
        print("unfinished", j, {k: v for k, v in r.hgetall(f"nanoedit:job:{j}").items()
                                if k in ("status", "stage", "generate_enqueued", "started_at")})
        print("  deliveries", {k: r.get(k) for k in r.scan_iter(f"nanoedit:deliveries:{j}*")})
        print("  unacked", [v[:200] for v in r.hvals("unacked") if j in v])
        print("  queues", {q: [m[:120] for m in r.lrange(q, 0, -1) if j in m] for q in ("preprocess", "generate")})


def _kill_and_recover(run: UpRun, r: redis.Redis, traffic: Traffic, program: str, queue_arg: str,
                      moment: Callable[[], Any]) -> float:
    """SIGKILL the program's Celery main process at `moment` (submissions paused, resumed right after the
    kill); seconds until its replacement consumes (its heartbeat)."""
    # Past its start (RUNNING): an exit now is restarted at once, not backed off as a failed start.
    wait_for(lambda: "RUNNING" in run.ctl("status", program), 60, f"{program} RUNNING", 0.5)
    old = run.main_pid(queue_arg)
    assert old is not None, run.ctl("status")
    assert f"pid {old}," in run.ctl("status", program)  # the process supervisord runs as `program`
    queue = queue_arg.split(",")[0]
    _pause_at(traffic, moment, f"the moment to kill {program}")

    in_flight = len(_unfinished(r, traffic.job_ids))
    os.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()
    time.sleep(0.5)  # Redis has dropped the dead consumer's connection (see the module docstring)
    traffic.resume()  # jobs arrive while the replacement starts

    def replaced() -> int | None:
        new = run.main_pid(queue_arg)
        if new in (None, old):
            return None
        # The replacement's worker name is `<program>-<its pid>@host` (the Procfile's `-n <program>-$$@%h`).
        members = r.zrange(f"nanoedit:workers:{queue}", 0, -1)
        return new if any(str(m).startswith(f"{program}-{new}@") for m in members) else None

    new = wait_for(replaced, 60, f"a new {program} worker instance", 0.1)
    recovery_s = time.monotonic() - killed_at
    print(f"{program}: main process {old} SIGKILLed with {in_flight} jobs unfinished, replacement {new} "
          f"consuming after {recovery_s:.1f} s")
    return recovery_s


def test_make_up_restarts_a_killed_worker_and_stops_everything_on_sigint(up: UpRun) -> None:
    # Given `make up` serving with every process ready
    wait_for(lambda: _ready(up), 180, "/readyz of the `make up` stack", 0.5)
    r = redis.Redis(port=up.redis_port, decode_responses=True)
    redis_pid = int((up.data_dir / "redis" / "redis.pid").read_text().strip())
    status = up.ctl("status")
    assert all(name in status for name in ("web", "preprocess", "generate", "webhooks", "beat")), status
    traffic = Traffic(up.url).start()
    try:
        wait_for(lambda: len(traffic.job_ids) >= 5, 60, "the first jobs", 0.1)

        # When the generate, then the preprocess worker's main process is SIGKILLed under load
        recoveries = {"generate": _kill_and_recover(up, r, traffic, "generate", "generate",
                                                    lambda: _generate_calls_in_flight(r, traffic.job_ids))}
        time.sleep(2)
        recoveries["preprocess"] = _kill_and_recover(up, r, traffic, "preprocess", "preprocess,maintenance",
                                                     lambda: _nothing_before_generate(r, traffic.job_ids))
        time.sleep(2)
    finally:
        traffic.stop()

    # Then web answered throughout, each replacement consumed within the limit and every job succeeded
    def all_ended() -> dict[str, str] | None:
        states = {}
        for job_id in traffic.job_ids:
            state = requests.get(f"{up.url}/v1/jobs/{job_id}", timeout=10).json()["status"]
            if state not in TERMINAL:
                return None
            states[job_id] = state
        return states

    started = time.monotonic()
    try:
        states = wait_for(all_ended, 90, "every submitted job to end", 1.0)
    except TimeoutError:
        _dump_unfinished(r, traffic.job_ids)
        raise
    redelivered = sum(1 for k in r.scan_iter("nanoedit:deliveries:*") if int(r.get(k) or 0) > 1)
    print(f"jobs: {len(traffic.job_ids)} submitted, {list(states.values()).count('succeeded')} succeeded, "
          f"{redelivered} task messages delivered more than once "
          f"(last one {time.monotonic() - started:.1f} s after the traffic stopped); kills: 2; "
          f"/healthz: {traffic.health_ok} ok, {len(traffic.health_failures)} failed; "
          f"recovery: " + ", ".join(f"{k} {v:.1f} s" for k, v in recoveries.items()))
    assert traffic.health_failures == [] and traffic.health_ok > 0
    assert traffic.refused == []
    assert set(states.values()) == {"succeeded"}, states
    assert all(v < RECOVERY_LIMIT_S for v in recoveries.values()), recoveries

    # When up.sh gets SIGINT (Ctrl-C)
    session_before = _session_pids(up.popen.pid)
    supervisord = up.supervisord_pid()
    os.kill(up.popen.pid, signal.SIGINT)
    stopped_at = time.monotonic()

    # Then supervisord, every program (and their children) and the private Redis are gone within the bound
    up.popen.wait(120)
    wait_for(lambda: not _session_pids(up.popen.pid) and not _alive(redis_pid), 30, "every process to exit", 0.2)
    print(f"SIGINT: {len(session_before)} processes and the private Redis gone after "
          f"{time.monotonic() - stopped_at:.1f} s")
    assert not _alive(supervisord)
    assert "stopping the private redis-server" in up.log()
    assert "stopped: generate" in up.log() and "stopped: web" in up.log()
