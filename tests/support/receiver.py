"""A real local HTTP receiver for webhook-style tests: http.server on 127.0.0.1:0 in a thread.

It records every request (path, headers, body, arrival time) and answers from a script: an int is a status,
"hang" holds the connection without answering (until `hang_s` passes or the receiver stops); when the script
runs out it answers 200. `delay_s` slows every answer (to make concurrent callers overlap). `Tarpit` is the
hostile kind: it accepts, reads the request and then trickles a response one byte at a time for ever.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, script: list[int | str] | None = None, *, hang_s: float = 5.0, delay_s: float = 0.0) -> None:
        self.script = list(script or [])
        self.hang_s = hang_s
        self.delay_s = delay_s
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body, time.monotonic()))
                    action = receiver.script.pop(0) if receiver.script else 200
                if action == "hang":
                    receiver._release.wait(receiver.hang_s)
                    return  # close without an answer
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                try:
                    self.send_response(int(action))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:
                    pass  # the caller gave up already

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="test-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


class Tarpit:
    """Accepts connections, reads the request, then trickles a status line one byte every `every_s` for ever."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.every_s = every_s
        self.connections = 0
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                if self.stop.wait(self.every_s):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
