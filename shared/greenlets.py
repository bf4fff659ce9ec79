"""Blocking work in a gevent process: run it on a native thread so the event loop keeps serving.

The web process (gunicorn's gevent worker) and the generate pool (`-P gevent`) are gevent processes: one blocking
call (fsync on a busy disk, decoding pixels) stalls every request or provider call the process holds. `offload`
runs such a call on gevent's native thread pool (file I/O and Pillow release the GIL meanwhile) and calls it in
place in any other process (prefork workers, tests, scripts). Hand-written rather than a library: it is a
two-line adapter over gevent's own hub thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def under_gevent() -> bool:
    """True in a process whose sockets gevent patched (gunicorn's gevent worker, Celery's `-P gevent`)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return bool(monkey.is_module_patched("socket"))


def offload(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` on a native thread under gevent, in place elsewhere."""
    if not under_gevent():
        return fn(*args)
    import gevent

    result: T = gevent.get_hub().threadpool.apply(fn, args)
    return result
