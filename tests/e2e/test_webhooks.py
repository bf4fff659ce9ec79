"""A finished job POSTs one Standard-Webhooks-signed notification to its webhook_url; 5xx answers are retried."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tests.conftest import FIXTURES
from tests.e2e.test_pipeline import wait_done
from tests.support.stack import WEBHOOK_SECRET, Stack, wait_for

pytestmark = pytest.mark.e2e


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = 500 if len(receiver.received) <= receiver.fail_first else 204
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def submit_with_hook(stack: Stack, url: str) -> str:
    resp = requests.post(f"{stack.url}/v1/jobs", timeout=30,
                         data={"instruction": "grayscale", "webhook_url": url},
                         files=[("image", ("a.png", (FIXTURES / "chelsea.png").read_bytes()))])
    assert resp.status_code == 202, resp.text
    assert resp.json()["webhook"]["state"] == "pending"
    return str(resp.json()["id"])


def test_finished_job_sends_one_signed_webhook(stack: Stack, receiver: Receiver) -> None:
    job_id = submit_with_hook(stack, receiver.url)
    assert wait_done(stack, job_id)["status"] == "succeeded"
    wait_for(lambda: receiver.received, 30, "the webhook")
    headers, body = receiver.received[0]
    payload = Webhook(WEBHOOK_SECRET).verify(body, headers)  # raises if the signature is wrong
    assert payload["type"] == "job.finished"
    assert payload["data"]["id"] == job_id and payload["data"]["status"] == "succeeded"
    assert headers["webhook-id"] == f"msg_{job_id}_succeeded"
    job = wait_for(lambda: (j := requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=5).json())["webhook"][
        "state"] == "delivered" and j, 10, "delivered state")
    assert job["webhook"]["attempts"] == 1 and job["webhook"]["last_status"] == 204
    assert len(receiver.received) == 1


def test_webhook_answered_with_500_is_retried(stack: Stack) -> None:
    flaky = Receiver(fail_first=1)
    try:
        job_id = submit_with_hook(stack, flaky.url)
        wait_for(lambda: len(flaky.received) >= 2, 60, "the retried webhook", 0.1)
        ids = {h["webhook-id"] for h, _ in flaky.received}
        assert ids == {f"msg_{job_id}_succeeded"}  # same id on retry: receivers can de-duplicate
        for headers, body in flaky.received:
            Webhook(WEBHOOK_SECRET).verify(body, headers)
        job = wait_for(lambda: (j := requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=5).json())["webhook"][
            "state"] == "delivered" and j, 10, "delivered state")
        assert job["webhook"]["attempts"] == 2
        assert json.loads(flaky.received[-1][1])["data"]["status"] == "succeeded"
    finally:
        flaky.close()
