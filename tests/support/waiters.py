"""Many idle HTTP clients held open against one web instance: `Prefer: wait` GETs sent and not yet answered
(used by tests/e2e/test_waiting_clients.py and bench/waiters.py)."""

from __future__ import annotations

import resource
import socket


def raise_open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def hold_waiters(port: int, job_id: str, n: int, wait_s: int = 60) -> list[socket.socket]:
    """n raw HTTP/1.1 clients, each with `GET /v1/jobs/{id}` + `Prefer: wait=...` sent and not yet answered."""
    request = (f"GET /v1/jobs/{job_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nPrefer: wait={wait_s}\r\n"
               "Connection: close\r\n\r\n").encode()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request)
        socks.append(s)
    return socks
