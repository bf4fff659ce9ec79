"""Durable, per-tenant, SSRF-guarded webhooks on a real stack (gunicorn API, Celery preprocess / generate /
webhooks workers, beat) with two API keys in a keys file, each with its own webhook secret.

Scaled for test time: the issue's "a receiver answers 500 for 10 minutes, then 200" runs at unit level with a fake
clock (tests/workers/test_webhook_delivery.py); here a receiver fails its first 4 attempts with the backoff base
at 0.2 s. Every test is bounded (≤ ~30 s) and asserts relations, not absolute latencies.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.apikeys import hash_key
from tests.conftest import FIXTURES
from tests.support.receiver import Receiver, Tarpit
from tests.support.stack import RedisServer, Stack, start_stack, wait_for

pytestmark = pytest.mark.e2e

DB = 23
HASH_SECRET = "e2e-key-hash-secret"
KEY_A, KEY_B = "tenant-a-key-0123456789", "tenant-b-key-0123456789"
SECRET_A = "whsec_" + base64.b64encode(b"tenant-a-webhook-secret-32-bytes").decode()
SECRET_B = "whsec_" + base64.b64encode(b"tenant-b-webhook-secret-32-bytes").decode()
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}
TIMEOUT_S = 6.0  # NANOEDIT_WEBHOOK_TIMEOUT_S of this stack: one attempt, start to end


@pytest.fixture(scope="module")
def hooks(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("webhooks")
    keys = Path(data) / "keys.toml"
    keys.write_text("".join(
        f'[[keys]]\nname = "{name}"\nkey_hash = "{hash_key(HASH_SECRET.encode(), key)}"\n'
        f'webhook_secret = "{secret}"\n\n' for name, key, secret in (("a", KEY_A, SECRET_A), ("b", KEY_B, SECRET_B))))
    s = start_stack(redis_server.url(DB), data, preprocess=1, generate=(2,), beat=True, webhooks=2,
                    NANOEDIT_API_KEYS_FILE=str(keys), NANOEDIT_KEY_HASH_SECRET=HASH_SECRET,
                    NANOEDIT_WEBHOOK_TIMEOUT_S=str(TIMEOUT_S))
    yield s
    s.stop()


def submit(stack: Stack, headers: dict[str, str], webhook_url: str | None = None) -> str:
    data = {"instruction": "grayscale", **({"webhook_url": webhook_url} if webhook_url else {})}
    # never answered from the result cache: every job runs the whole pipeline (its terminal write in a worker)
    resp = requests.post(f"{stack.url}/v1/jobs", timeout=30, headers={**headers, "Cache-Control": "no-cache"},
                         data=data, files=[("image", ("a.png", (FIXTURES / "chelsea.png").read_bytes()))])
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def delivery(stack: Stack, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    resp = requests.get(f"{stack.url}/v1/jobs/{job_id}/webhooks", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def settled(stack: Stack, job_id: str, headers: dict[str, str], timeout_s: float = 30) -> dict[str, Any]:
    return dict(wait_for(lambda: (d := delivery(stack, job_id, headers))["state"] in ("delivered", "failed") and d,
                         timeout_s, f"the webhook of {job_id}", 0.1))


def get_job(stack: Stack, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    return dict(requests.get(f"{stack.url}/v1/jobs/{job_id}", headers=headers, timeout=10).json())


def wait_done(stack: Stack, job_id: str, headers: dict[str, str] = A) -> dict[str, Any]:
    return dict(wait_for(lambda: (j := get_job(stack, job_id, headers))["finished_at"] and j, 60,
                         f"job {job_id} to finish", 0.1))


def test_ssrf_forms_are_refused_at_intake_and_nothing_is_created(hooks: Stack) -> None:
    # 127.0.0.1 itself is this stack's allowed receiver host; every other internal form is refused.
    for url in ("http://127.0.0.2/h", "http://2130706434/h", "http://0x7f.2/h", "http://[::1]/h",
                "http://[::ffff:127.0.0.2]/h", "http://10.0.0.1/h", "http://169.254.169.254/latest/meta-data/",
                "http://[fc00::1]/h", "http://0.0.0.0/h", "http://100.64.0.1/h", "http://8.8.8.8:22/h"):
        resp = requests.post(f"{hooks.url}/v1/jobs", timeout=30, headers=A,
                             data={"instruction": "grayscale", "webhook_url": url},
                             files=[("image", ("a.png", (FIXTURES / "chelsea.png").read_bytes()))])
        assert resp.status_code == 422 and resp.json()["code"] == "invalid_webhook_url", (url, resp.text)
        assert "NANOEDIT_WEBHOOK_ALLOW_HOSTS" in resp.json()["suggestion"]
    assert requests.get(f"{hooks.url}/v1/jobs", headers=A, timeout=10).json()["jobs"] == []


def test_each_key_signs_with_its_own_secret(hooks: Stack) -> None:
    with Receiver() as receiver:
        job_a = submit(hooks, A, receiver.url)
        job_b = submit(hooks, B, receiver.url)
        settled(hooks, job_a, A)
        settled(hooks, job_b, B)
    by_job = {r.json()["data"]["id"]: r for r in receiver.requests}
    a, b = by_job[job_a], by_job[job_b]
    assert Webhook(SECRET_A).verify(a.body, a.headers)["data"]["status"] == "succeeded"
    assert Webhook(SECRET_B).verify(b.body, b.headers)["data"]["status"] == "succeeded"
    with pytest.raises(WebhookVerificationError):  # key B's secret cannot verify (or forge) key A's events
        Webhook(SECRET_B).verify(a.body, a.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_A).verify(b.body, b.headers)


def test_a_receiver_failing_its_first_attempts_gets_it_with_every_attempt_logged(hooks: Stack) -> None:
    with Receiver([500, 500, 503, 500]) as receiver:
        job_id = submit(hooks, A, receiver.url)
        done = settled(hooks, job_id, A)
    assert done["state"] == "delivered" and done["webhook_id"] == f"msg_{job_id}_succeeded"
    assert [a["http_status"] for a in done["attempts"]] == [500, 500, 503, 500, 200]
    assert [a["n"] for a in done["attempts"]] == [1, 2, 3, 4, 5]
    assert [a["state"] for a in done["attempts"]] == ["retrying"] * 4 + ["delivered"]
    assert len(receiver.requests) == 5 and {r.headers["webhook-id"] for r in receiver.requests} == {
        done["webhook_id"]}
    for r in receiver.requests:
        Webhook(SECRET_A).verify(r.body, r.headers)
    assert get_job(hooks, job_id, A)["webhook"]["state"] == "delivered"


def test_the_webhook_survives_losing_everything_after_the_terminal_write(hooks: Stack) -> None:
    # Given no webhooks worker, and the fast-path message lost: the state Redis is left in when the process that
    # made the terminal write dies right after it (SIGKILL) — only the outbox entry written with the status.
    hooks.procs["webhooks"].kill_group()
    hooks.procs["webhooks"].popen.wait(10)
    with Receiver() as receiver:
        job_id = submit(hooks, A, receiver.url)
        assert wait_done(hooks, job_id)["status"] == "succeeded"
        redis.Redis.from_url(hooks.env["NANOEDIT_REDIS_URL"]).delete("webhooks")  # the Celery queue's list
        owed = delivery(hooks, job_id, A)
        assert owed["state"] == "pending" and owed["attempts"] == []
        # When a webhooks worker comes back, beat's dispatcher finds the delivery in the outbox
        hooks.start_worker("webhooks", 2)
        done = settled(hooks, job_id, A, timeout_s=40)
    assert done["state"] == "delivered" and len(receiver.requests) == 1
    Webhook(SECRET_A).verify(receiver.requests[0].body, receiver.requests[0].headers)


def test_a_tarpit_receiver_does_not_slow_preprocessing(hooks: Stack) -> None:
    baseline = wait_done(hooks, submit(hooks, A))
    tarpit = Tarpit(every_s=0.5)
    try:
        # Both webhook threads of the pool are held by receivers that trickle one byte every 0.5 s
        stuck = [submit(hooks, A, tarpit.url) for _ in range(2)]
        wait_for(lambda: tarpit.connections >= 2, 30, "the tarpit to hold both webhook threads", 0.1)
        held_since = time.monotonic()
        during = wait_done(hooks, submit(hooks, A))
        finished_within = time.monotonic() - held_since
        still_held = [delivery(hooks, j, A)["attempts"] for j in stuck]
        # Then the plain job finished while both attempts were still stuck, and each attempt ended at the deadline
        assert during["status"] == "succeeded" and still_held == [[], []], (finished_within, still_held)
        ends = [wait_for(lambda j=j: delivery(hooks, j, A)["attempts"], 30, "the attempt to end", 0.2)[0]
                for j in stuck]
    finally:
        tarpit.close()
    for attempt in ends:
        assert attempt["error"] == "timeout" and attempt["http_status"] is None
        assert TIMEOUT_S * 1000 <= attempt["duration_ms"] < TIMEOUT_S * 1000 + 2500
    print(f"baseline preprocess {baseline['timings']['preprocess_ms']} ms, total {baseline['timings']['total_ms']} "
          f"ms; with the webhook pool held: preprocess {during['timings']['preprocess_ms']} ms, total "
          f"{during['timings']['total_ms']} ms (finished {finished_within:.1f} s into a {TIMEOUT_S} s hold)")


def test_redeliver_sends_it_again_with_the_same_id(hooks: Stack) -> None:
    with Receiver() as receiver:
        job_id = submit(hooks, B, receiver.url)
        first = settled(hooks, job_id, B)
        resp = requests.post(f"{hooks.url}/v1/jobs/{job_id}/webhooks/redeliver", headers=B, timeout=10)
        assert resp.status_code == 202 and resp.json()["state"] == "pending"
        wait_for(lambda: len(receiver.requests) >= 2, 30, "the redelivery", 0.1)
        again = settled(hooks, job_id, B)
    assert first["state"] == again["state"] == "delivered" and len(again["attempts"]) == 2
    assert [r.headers["webhook-id"] for r in receiver.requests] == [f"msg_{job_id}_succeeded"] * 2
    other = requests.post(f"{hooks.url}/v1/jobs/{job_id}/webhooks/redeliver", headers=A, timeout=10)
    assert other.status_code == 404  # another key's job
