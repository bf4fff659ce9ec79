"""The generate pool's adapters (workers/concurrency.py): a total deadline on a call that trickles, and CPU work on
a native thread — under gevent, in a subprocess patched the way Celery's `-P gevent` patches a worker."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from workers.concurrency import call_with_deadline, offload, under_gevent

ROOT = Path(__file__).resolve().parents[2]

_TRICKLE = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import socket, threading, time
    from workers.concurrency import call_with_deadline, offload, under_gevent
    from workers.providers.base import ProviderTimeout

    server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
    def trickle():  # one byte every 50 ms, for ever: no per-read timeout ever fires
        conn, _ = server.accept()
        try:
            while True:
                conn.sendall(b"x"); time.sleep(0.05)
        except OSError:
            pass
    threading.Thread(target=trickle, daemon=True).start()

    def slow_call():
        s = socket.create_connection(server.getsockname(), timeout=1.0)  # a per-read timeout, like the SDK's
        got = b""
        while True:
            got += s.recv(1)

    assert under_gevent()
    started = time.monotonic()
    try:
        call_with_deadline(slow_call, 0.5)
    except ProviderTimeout as exc:
        print("timeout after", round(time.monotonic() - started, 2), exc.code)
    main = threading.get_native_id()
    print("offloaded to another thread:", offload(threading.get_native_id) != main)
    print("value passes through:", call_with_deadline(lambda: 42, 5))
""")


def test_under_gevent_a_trickling_call_ends_at_its_total_deadline_and_cpu_work_runs_on_a_native_thread() -> None:
    # Given a process patched by gevent and a server that answers one byte every 50 ms
    done = subprocess.run([sys.executable, "-c", _TRICKLE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    # Then the call is cut at its 0.5 s deadline as an upstream timeout, and offload leaves the loop's thread
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    seconds, code = lines[0].split()[2:4]
    assert 0.4 <= float(seconds) < 5 and code == "upstream_timeout"
    assert lines[1:] == ["offloaded to another thread: True", "value passes through: 42"]


def test_without_gevent_both_adapters_call_straight_through() -> None:
    # Given this (unpatched) test process: prefork's soft time limit is the deadline there
    assert not under_gevent()
    # Then the call is made as is, even with no time left, and offload calls in place
    assert call_with_deadline(lambda: "answered", 0.0) == "answered"
    assert offload(sum, [1, 2, 3]) == 6
