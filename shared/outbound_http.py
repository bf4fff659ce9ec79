"""One POST to a checked `shared.outbound.Target`: connect to the address that was checked, nowhere else.

- **Pinned address.** The TCP connection goes to `Target.address`, or to the next of the other checked addresses
  if it cannot connect (the resolver is not asked again, so a DNS answer that changes between check and connect —
  rebinding — cannot redirect it); the Host header, TLS SNI and the certificate check use the URL's host name
  (`http.client` does both from `host`; only the socket's destination is replaced).
- **No redirects**: `http.client` never follows them; a 3xx is just the answer.
- **One deadline for the whole exchange** (`timeout_s`: connect, TLS, sending, the status line and headers). Per-
  read socket timeouts alone would let a receiver that trickles one byte a second hold the caller for ever, so a
  watchdog timer shuts the socket down when the deadline passes, whatever the call is blocked in.
- **Nothing unbounded is read**: the response body is never read; http.client caps the header block (100
  headers of ≤ 64 KiB) and the deadline bounds the rest.

The stdlib `http.client` is used because requests/urllib3 offer no supported way to pin the destination address
while keeping the host name for SNI and certificate checks short of subclassing their pool internals, and the
deadline needs the socket anyway. TLS trusts certifi's CA bundle, like requests does.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import certifi

from shared.clock import Clock
from shared.outbound import Target


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    """How one request ended: an HTTP status, or an error name (`timeout`, `connection_error`, `tls_error`,
    `protocol_error`) and no status."""

    status: int | None
    error: str
    duration_ms: int


def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


class _Watchdog:
    """Shuts the connection's socket down once the deadline passes (unblocks any read or write)."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self.conn = conn
        self.fired = False
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            sock = self.conn.sock
            if sock is not None and sock.fileno() != -1:
                with contextlib.suppress(OSError):  # the base-class shutdown acts on the descriptor, SSL or not
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()


def _connection(target: Target, timeout_s: float) -> http.client.HTTPConnection:
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        conn = http.client.HTTPSConnection(target.host, target.port, timeout=timeout_s, context=_tls_context())
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout_s)
    def connect_to_checked_address(_: Any, timeout: Any = None, source: Any = None) -> socket.socket:
        """The checked addresses in order (never a fresh lookup of the name); the first that connects."""
        error: OSError | None = None
        for address in (target.address, *target.fallbacks):
            try:
                return socket.create_connection((address, target.port), timeout, source)
            except OSError as exc:
                error = exc
        assert error is not None
        raise error

    conn._create_connection = connect_to_checked_address  # type: ignore[attr-defined]  # http.client's hook
    return conn


def post(target: Target, body: bytes, headers: Mapping[str, str], *, timeout_s: float,
         clock: Clock) -> HttpOutcome:
    """POST `body` to `target`; never raises for network trouble (the outcome says what happened)."""
    started = clock.monotonic()
    conn = _connection(target, timeout_s)
    status: int | None = None
    error = ""
    with _Watchdog(conn, timeout_s) as watchdog:
        try:
            conn.request("POST", target.path, body=body, headers={**headers, "Content-Length": str(len(body)),
                                                                    "Connection": "close"})
            status = conn.getresponse().status
        except TimeoutError:
            error = "timeout"
        except ssl.SSLError:
            error = "timeout" if watchdog.fired else "tls_error"
        except http.client.HTTPException:
            error = "timeout" if watchdog.fired else "protocol_error"
        except OSError:
            error = "timeout" if watchdog.fired else "connection_error"
        finally:
            conn.close()
    if watchdog.fired and status is None:
        error = "timeout"
    return HttpOutcome(status=status, error=error, duration_ms=max(0, round((clock.monotonic() - started) * 1000)))
