"""Prometheus multiprocess mode per process role: which directory each process writes, when it is wiped.

prometheus-client keeps a counter in process memory unless PROMETHEUS_MULTIPROC_DIR is set *when it is first
imported* (it picks its value class at import). Under gunicorn workers and Celery prefork children that means
each child counts alone and a scrape sees one child's share: 10-25× too little. So the env var is set here,
in the parent, before anything imports prometheus_client, and every child inherits it:

- web: `deploy/gunicorn.conf.py` (the gunicorn master) → `{data_dir}/prometheus/web-{port}`, wiped in the
  `on_starting` hook, `mark_dead` in `child_exit`; the API's `GET /metrics` merges that directory.
- each Celery worker *instance*: `workers/celery_app.py` (the main process, at import, before the pool forks) →
  `{data_dir}/prometheus/{node name}` (`preprocess@host`, `generate@host`), wiped there; served by one HTTP
  server in the main process (`workers/metrics_server.py`), never one port per child.
- beat and every other process (CLI, tests): plain in-memory mode; beat records nothing worth scraping.

This module must not import prometheus_client at import time (that would freeze the mode too early).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.settings import Settings

log = logging.getLogger("nanoedit.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"
OWNER = "owner"  # "<host> <pid>" of the process that created the directory (not *.db: never merged)
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")
_UNSAFE = re.compile(r"[^A-Za-z0-9@._-]")


def metrics_root(settings: Settings) -> Path:
    return settings.data_dir / "prometheus"


def instance_dir(settings: Settings, instance: str) -> Path:
    """The directory of one process tree (a gunicorn master's workers, or one Celery worker instance)."""
    return metrics_root(settings) / (_UNSAFE.sub("_", instance) or "default")


def web_dir(settings: Settings) -> Path:
    return instance_dir(settings, f"web-{settings.port}")


def activate(path: Path, *, wipe: bool) -> Path:
    """Point this process (and every child it forks from now on) at `path`.

    `wipe` (the tree's parent, once at start): empty it, record this process as its owner, and remove sibling
    directories whose owner on this host is gone (node names with a pid in them, `generate-$$@host`, would
    otherwise leave one directory per restart behind).
    """
    if wipe:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        (path / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        _prune_stale_siblings(path)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(path)
    values = sys.modules.get("prometheus_client.values")
    if values is not None and getattr(values, "ValueClass", type).__name__ == "MutexValue":
        log.error("prometheus_client was imported before multiprocess mode was set: metrics of this process "
                  "tree will be undercounted", extra={"dir": str(path)})
    return path


def _prune_stale_siblings(path: Path) -> None:
    host = socket.gethostname()
    for sibling in path.parent.iterdir():
        if sibling == path or not (sibling / OWNER).is_file():
            continue
        try:
            owner_host, pid = (sibling / OWNER).read_text().split()
            stale = owner_host == host and not _alive(int(pid))
        except (OSError, ValueError):
            continue
        if stale:
            shutil.rmtree(sibling, ignore_errors=True)


def deactivate() -> None:
    os.environ.pop(ENV, None)


def current_dir() -> Path | None:
    raw = os.environ.get(ENV, "")
    return Path(raw) if raw and os.path.isdir(raw) else None


def celery_command(argv: Sequence[str]) -> tuple[str, str | None]:
    """("worker", node name) | ("beat", None) | ("", None) from a `celery ... worker|beat ...` command line.

    At import of the Celery app the CLI has not parsed `-n` yet, so it is read here the way Celery expands it
    (`default_nodename` + `host_format`: `generate@%h` → `generate@myhost`; none given → `celery@myhost`).
    """
    if not argv or "celery" not in Path(argv[0]).parts[-2:]:
        return "", None
    args = list(argv[1:])
    command = next((a for a in args if a in ("worker", "beat")), "")
    if command != "worker":
        return command, None
    raw = ""
    for i, arg in enumerate(args):
        if arg in ("-n", "--hostname") and i + 1 < len(args):
            raw = args[i + 1]
        elif arg.startswith("--hostname="):
            raw = arg.split("=", 1)[1]
        elif arg.startswith("-n") and not arg.startswith("--") and len(arg) > 2:
            raw = arg[2:]
    from celery.utils.nodenames import default_nodename, host_format

    return "worker", host_format(default_nodename(raw))


def setup_celery_process(settings: Settings, argv: Sequence[str]) -> Path | None:
    """Called at the top of the Celery app module, before any task module (and prometheus_client) loads."""
    command, node = celery_command(argv)
    if command == "beat":
        deactivate()  # an inherited dir would only collect beat's empty files
        return None
    if command != "worker" or node is None:
        return None
    # A pool child started as a fresh interpreter (spawn) re-imports the app: it must not wipe its siblings.
    child = bool(os.environ.get("FORKED_BY_MULTIPROCESSING"))
    return activate(instance_dir(settings, node), wipe=not child)


def mark_dead(pid: int, path: Path | None = None) -> None:
    """Drop a dead process's live-gauge files (its counters and histograms stay: totals never go down)."""
    from prometheus_client import multiprocess

    target = path or current_dir()
    if target is not None:
        multiprocess.mark_process_dead(pid, str(target))


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to `wanted` (at most the hard limit); the limit now in force.
    Lives here beside the other per-process set-up that gunicorn's master does before forking."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open-files limit", extra={"wanted": wanted, "soft": soft})
    return soft


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_dead(path: Path) -> int:
    """Before a scrape: mark_dead every pid with live-gauge files that no longer runs (a SIGKILLed child never
    runs its exit hook). The directory is local to this host, so a pid check is meaningful."""
    dead = set()
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return 0
    for name in names:
        m = _LIVE_FILE.match(name)
        if m and not _alive(int(m.group(1))):
            dead.add(int(m.group(1)))
    for pid in dead:
        mark_dead(pid, path)
    return len(dead)
