"""What the generate stage needs from its pool type: a total deadline on the provider call, and CPU work off the
event loop.

The generate pool runs on gevent (Procfile: `-P gevent`): a provider call only waits on the network, so one
process holds dozens of calls in flight as greenlets instead of one process per call (docs/operations.md,
"Generate pool"). Two things the prefork pool gave for free must then be done here:

- **A total deadline.** Celery's soft time limit is a signal, which only prefork delivers; the SDK's timeout is
  per phase (connect/read/write), so a server that trickles bytes could hold a call for ever. `call_with_deadline`
  bounds the whole call with `gevent.Timeout` (raised at the call's next wait on the network) and turns it into
  `ProviderTimeout`, which the error table retries like any upstream timeout. Under prefork (tests, an operator
  who keeps `-P prefork`) it calls straight through: the soft time limit does the job there.
- **CPU work off the loop.** Checking and converting a returned image decodes pixels; on the loop that would
  stall every other call of the process. `offload` (shared/greenlets.py) runs it on gevent's native thread
  pool (Pillow releases the GIL while it decodes and encodes), and calls it directly elsewhere.

Hand-written rather than a library: these are two small adapters over gevent's own Timeout and hub thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from shared.greenlets import offload as offload  # re-exported: the pipeline's CPU work
from shared.greenlets import under_gevent
from workers.providers.base import ProviderTimeout

T = TypeVar("T")


def call_with_deadline(fn: Callable[[], T], seconds: float) -> T:
    """`fn()`, or ProviderTimeout once `seconds` pass (under gevent; elsewhere the caller's time limit rules)."""
    if not under_gevent():
        return fn()
    import gevent

    timeout = gevent.Timeout(max(0.001, seconds))
    timeout.start()
    try:
        return fn()
    except gevent.Timeout as exc:
        if exc is not timeout:
            raise
        raise ProviderTimeout(f"no complete answer within {seconds:.0f} s (the call's total deadline)") from None
    finally:
        timeout.close()
