"""The pinned POST (shared/outbound_http.py) against real local sockets: it connects to the checked address only,
sends the URL's host name, never follows a redirect, and one deadline bounds a receiver that trickles bytes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.clock import SystemClock
from shared.outbound import Target
from shared.outbound_http import post
from tests.support.receiver import Receiver, Tarpit

CLOCK = SystemClock()


def target(port: int, host: str = "127.0.0.1", path: str = "/hook") -> Target:
    return Target(url=f"http://{host}:{port}{path}", scheme="http", host=host, port=port, path=path,
                  address="127.0.0.1")


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    t = Tarpit()
    yield t
    t.close()


def test_connects_to_the_checked_address_and_sends_the_url_host() -> None:
    with Receiver([204]) as receiver:
        port = receiver.server.server_address[1]
        # The URL names a host that does not resolve at all: only the pinned address can have been used.
        outcome = post(target(port, host="receiver.invalid"), b'{"a":1}', {"Content-Type": "application/json"},
                       timeout_s=5, clock=CLOCK)
    assert (outcome.status, outcome.error) == (204, "")
    got = receiver.requests[0]
    assert got.headers["host"] == f"receiver.invalid:{port}" and got.path == "/hook" and got.body == b'{"a":1}'


def test_a_redirect_is_an_answer_never_followed() -> None:
    followed: list[str] = []

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            followed.append(self.path)
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        outcome = post(target(server.server_address[1]), b"{}", {}, timeout_s=5, clock=CLOCK)
    finally:
        server.shutdown()
        server.server_close()
    assert outcome.status == 302 and followed == ["/hook"]


def test_a_trickling_receiver_is_cut_off_at_the_deadline(tarpit: Tarpit) -> None:
    started = time.monotonic()
    outcome = post(target(tarpit.port), b"{}", {}, timeout_s=1.0, clock=CLOCK)
    elapsed = time.monotonic() - started
    assert outcome.status is None and outcome.error == "timeout"
    assert 0.9 <= elapsed < 2.0  # per-read timeouts alone would wait ~2000 s for this one
    assert 900 <= outcome.duration_ms < 2000


def test_a_silent_receiver_times_out_and_a_closed_port_is_a_connection_error() -> None:
    with Receiver(["hang"], hang_s=5) as receiver:
        outcome = post(target(receiver.server.server_address[1]), b"{}", {}, timeout_s=0.5, clock=CLOCK)
    assert outcome.status is None and outcome.error == "timeout"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    outcome = post(target(closed), b"{}", {}, timeout_s=2, clock=CLOCK)
    assert outcome.status is None and outcome.error == "connection_error"


def test_tls_uses_the_url_host_for_sni_and_verifies_the_certificate(tmp_path: Any) -> None:
    """A self-signed certificate for the right name is still refused (not in the CA bundle), and the server saw
    the URL's host name as SNI although the connection went to the pinned address."""
    import shutil
    import ssl
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=receiver.test", "-addext", "subjectAltName=DNS:receiver.test", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    seen: list[str | None] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda _sock, name, _ctx: seen.append(name)  # type: ignore[assignment,misc]
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # the client refuses our certificate

    threading.Thread(target=serve, daemon=True).start()
    port = server.getsockname()[1]
    tls = Target(url=f"https://receiver.test:{port}/hook", scheme="https", host="receiver.test", port=port,
                 path="/hook", address="127.0.0.1")
    outcome = post(tls, b"{}", {}, timeout_s=5, clock=CLOCK)
    server.close()
    assert outcome.status is None and outcome.error == "tls_error"
    assert seen == ["receiver.test"]


def test_the_other_checked_addresses_are_tried_when_the_first_cannot_connect() -> None:
    with Receiver([204]) as receiver:
        port = receiver.server.server_address[1]
        # ::1 has nothing listening on that port here (or no IPv6 at all): the next checked address is used
        t = Target(url=f"http://h.test:{port}/hook", scheme="http", host="h.test", port=port, path="/hook",
                   address="::1", fallbacks=("127.0.0.1",))
        assert post(t, b"{}", {}, timeout_s=5, clock=CLOCK).status == 204
