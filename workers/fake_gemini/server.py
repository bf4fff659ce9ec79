"""`FakeGeminiServer`: the fake Gemini API served over real HTTP on a local port.

The stdlib `ThreadingHTTPServer` is enough here (one daemon thread per connection, no dependency); the
pipeline itself lives in `app.FakeGemini`. Stopping the server interrupts every simulated latency and hang at
once (they wait on the server's stop event), so a test that leaves a request hanging for 300 s still shuts down
in milliseconds. A hang also ends as soon as the client hangs up (we peek at the socket while waiting).
"""

from __future__ import annotations

import select
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

from shared.clock import Clock, SystemClock
from workers.fake_gemini.app import FakeGemini
from workers.fake_gemini.config import FakeGeminiConfig
from workers.fake_gemini.wire import Reply

MAX_BODY_BYTES = 100 * 1024 * 1024


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never wait for a hanging handler at shutdown

    def __init__(self, address: tuple[str, int], app: FakeGemini, log_requests: bool) -> None:
        self.app = app
        self.log_requests = log_requests
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # a client that went away is normal under load tests, not an error
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: headers and body go out in two sends; with Nagle on, the body waited for the client's delayed
    # ACK and every call took ~40 ms more than the fake's configured latency (found by `make bench`, "overhead").
    disable_nagle_algorithm = True
    server_version = "FakeGemini/1"
    timeout = 300  # idle keep-alive connections are dropped after this long
    _replied = False

    def _dispatch(self) -> None:
        srv = cast(_HTTPServer, self.server)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(Reply(413, b'{"error":{"code":413,"message":"Request too large.",'
                                  b'"status":"INVALID_ARGUMENT"}}'))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._replied = False
        srv.app.handle(self.command, self.path, headers, body, self._send, self._client_gone)
        if not self._replied:
            # No answer (client gone, or server stopping mid-hang): close rather than leave a keep-alive
            # client waiting for a response that will never come.
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _send(self, reply: Reply) -> bool:
        self._replied = True
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
            return True
        except OSError:
            self.close_connection = True
            return False

    def _client_gone(self) -> bool:
        """True once the peer closed its end (readable socket with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            gone = self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            gone = True
        if gone:
            self.close_connection = True
        return gone

    def log_message(self, format: str, *args: Any) -> None:
        if cast(_HTTPServer, self.server).log_requests:
            super().log_message(format, *args)


class _StoppableClock(SystemClock):
    """The system clock, except that `sleep` returns early when the server stops (interrupts latency and hangs)."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping

    def sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)


class FakeGeminiServer:
    """A running fake API: `start()` binds (port 0 = ephemeral), `.base_url` is what the SDK should use.

    `clock` drives all of its time: simulated latency, hangs and `slow` wait on `clock.sleep`, the rpm window
    reads `clock.monotonic()`, the request log `clock.now()`. Tests pass a `FakeClock`; the default is the system
    clock with a `sleep` that returns as soon as the server stops.
    """

    def __init__(self, config: FakeGeminiConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 clock: Clock | None = None, log_requests: bool = False) -> None:
        self._host = host
        self._requested_port = port
        self._stopping = threading.Event()
        self.app = FakeGemini(config, clock=clock or _StoppableClock(self._stopping), stopping=self._stopping)
        self._log_requests = log_requests
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> FakeGeminiServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self._host, self._requested_port), self.app, self._log_requests)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-gemini:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Interrupt waits, stop accepting, close the socket; idempotent."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def wait(self) -> None:
        """Block until `stop()` is called from elsewhere (or KeyboardInterrupt); used by the CLI."""
        self._stopping.wait()

    def __enter__(self) -> FakeGeminiServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- addresses and shortcuts ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("fake Gemini server is not running")
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return self._host

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def config(self) -> FakeGeminiConfig:
        return self.app.config

    def configure(self, **changes: Any) -> FakeGeminiConfig:
        return self.app.configure(changes)

    def requests(self) -> list[dict[str, Any]]:
        return self.app.recorder.requests()

    def stats(self) -> dict[str, Any]:
        return self.app.recorder.stats()

    def reset(self) -> None:
        self.app.reset()
