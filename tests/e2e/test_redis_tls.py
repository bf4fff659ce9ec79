"""Redis over TLS (docs/operations.md, "Redis"): a redis-server that listens on TLS only and requires a client
certificate, a CA and certificates generated for the test. A job runs end to end (web, real Celery workers: the
job store and the broker both over TLS), and a client that does not trust the CA, or has no client certificate,
gets an error at once instead of a hang."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from kombu.exceptions import OperationalError

from shared.queueing import make_celery
from shared.redis_conn import redis_client
from shared.settings import Settings
from tests.conftest import FIXTURES
from tests.support.redis_topology import TlsRedisServer, TlsSentinel
from tests.support.stack import start_stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TERMINAL = ("succeeded", "partially_succeeded", "failed", "canceled")


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedisServer]:
    server = TlsRedisServer(tmp_path_factory.mktemp("tls"))
    yield server
    server.stop()


def tls_env(server: TlsRedisServer, **extra: str) -> dict[str, str]:
    f = server.files
    return {"NANOEDIT_REDIS_URL": server.url(0), "NANOEDIT_REDIS_TLS_CA": str(f.ca),
            "NANOEDIT_REDIS_TLS_CERT": str(f.client_cert), "NANOEDIT_REDIS_TLS_KEY": str(f.client_key), **extra}


def test_a_job_runs_end_to_end_over_tls(tls_redis: TlsRedisServer, tmp_path: Path) -> None:
    # Given web and workers configured with the CA and a client certificate (the server has no plain port)
    env = tls_env(tls_redis)
    s = start_stack(env.pop("NANOEDIT_REDIS_URL"), tmp_path / "stack", generate=(1,), webhooks=0, flush=False, **env)
    try:
        # When a job is submitted
        resp = requests.post(f"{s.url}/v1/jobs", timeout=30, data={"instruction": "grayscale"},
                             files=[("image", ("a.png", (FIXTURES / "chelsea.png").read_bytes()))])
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]

        # Then it goes through the broker and the workers to success
        def terminal() -> dict[str, object] | None:
            job = requests.get(f"{s.url}/v1/jobs/{job_id}", timeout=10).json()
            return job if job["status"] in TERMINAL else None

        job = wait_for(terminal, 90, "the job to finish over TLS", 0.2)
        assert job["status"] == "succeeded", (job, s.logs())
        # and its record is in the TLS server, read back through the same client the processes use
        r = redis_client(Settings.from_env(tls_env(tls_redis)))
        assert r.hget(f"nanoedit:job:{job_id}", "status") == "succeeded"
    finally:
        s.stop()


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_redis: TlsRedisServer) -> None:
    # Given settings without NANOEDIT_REDIS_TLS_CA: only the system's trust store, which lacks the test CA
    env = tls_env(tls_redis)
    del env["NANOEDIT_REDIS_TLS_CA"]
    settings = Settings.from_env(env)
    # When the job store client connects, Then certificate verification fails with an error (not a hang)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis_client(settings).ping()
    # and so does the Celery broker connection
    with make_celery(settings).connection_for_write() as conn, pytest.raises(OperationalError,
                                                                            match="certificate verify failed"):
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)


def test_a_client_without_a_client_certificate_is_refused(tls_redis: TlsRedisServer) -> None:
    # Given settings that trust the CA but present no client certificate (the server requires one)
    settings = Settings.from_env({"NANOEDIT_REDIS_URL": tls_redis.url(0),
                                  "NANOEDIT_REDIS_TLS_CA": str(tls_redis.files.ca)})
    # When the client connects, Then the server refuses the handshake and the client gets an error
    with pytest.raises(redis.ConnectionError):
        redis_client(settings).ping()


def test_sentinel_over_tls_finds_the_master_for_the_job_store_and_the_broker(tls_redis: TlsRedisServer,
                                                                             tmp_path: Path) -> None:
    # Given a sentinel that listens on TLS only and monitors the TLS server
    sentinel = TlsSentinel(tls_redis, tmp_path / "sentinel")
    try:
        env = tls_env(tls_redis, NANOEDIT_REDIS_URL="rediss://unused.invalid:6380/6",
                      NANOEDIT_REDIS_SENTINELS=f"127.0.0.1:{sentinel.port}", NANOEDIT_REDIS_MASTER=sentinel.MASTER)
        settings = Settings.from_env(env)
        # When the job store client writes through it, Then the write lands on the master (db 6 of the URL)
        redis_client(settings).set("tls-sentinel-probe", "1")
        direct = redis_client(Settings.from_env(tls_env(tls_redis, NANOEDIT_REDIS_URL=tls_redis.url(6))))
        assert direct.get("tls-sentinel-probe") == "1"
        # and a Celery broker connection through it carries a message both ways
        with make_celery(settings).connection_for_write() as conn:
            queue = conn.SimpleQueue("tls-sentinel-probe-queue")
            queue.put({"ok": True})
            assert queue.get(timeout=10).payload == {"ok": True}
            queue.close()
        direct.flushdb()
    finally:
        sentinel.stop()
