"""Two hosts, no shared disk: web and two worker sets, each with its own NANOEDIT_DATA_DIR, share blobs only
through an S3-compatible store (moto in server mode on loopback) and one Redis.

Every input the web stores is read by a worker on another "host", every output a worker stores is served by
the web; downloads work both streamed and, on a second web process with NANOEDIT_BLOB_REDIRECTS=1, through
the presigned redirect. Nothing lands on any local disk.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.conftest import FIXTURES
from tests.support.s3 import MotoS3
from tests.support.stack import RedisServer, Stack, make_stack, wait_for

pytestmark = pytest.mark.e2e
TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}
DB = 21  # a Redis database of its own


@dataclass
class Fleet:
    web: Stack  # streams outputs
    redirecting_web: Stack  # NANOEDIT_BLOB_REDIRECTS=1
    hosts: list[Stack]  # one preprocess + one generate worker each
    bucket: str

    @property
    def all(self) -> list[Stack]:
        return [self.web, self.redirecting_web, *self.hosts]

    def logs(self) -> str:
        return "\n".join(s.logs() for s in self.all)


def _registered(r: redis.Redis, queue: str) -> int:
    return int(r.zcount(f"nanoedit:workers:{queue}", time.time() - 30, "+inf"))


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, moto_s3: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    url = redis_server.url(DB)
    r = redis.Redis.from_url(url)
    r.flushdb()
    bucket = moto_s3.new_bucket()
    root = tmp_path_factory.mktemp("object-storage")
    # The local provider takes 1 s per output, so a generate worker is busy long enough for the other to get work.
    env = {**moto_s3.env(bucket), "NANOEDIT_WEB_WORKERS": "1", "NANOEDIT_LOCAL_DELAY_S": "1"}
    web = make_stack(url, root / "web", **env)
    redirecting = make_stack(url, root / "web-redirects", **env, NANOEDIT_BLOB_REDIRECTS="1")
    hosts = [make_stack(url, root / f"host-{n}", **env) for n in ("a", "b")]
    fleet = Fleet(web, redirecting, hosts, bucket)
    try:
        for n, host in zip(("a", "b"), hosts, strict=True):
            host.start_worker("preprocess", 1, name=f"preprocess-{n}")
            host.start_worker("generate", 1, name=f"generate-{n}")
        web.start_api()
        redirecting.start_api()
        web.wait_api(60)
        redirecting.wait_api(60)
        wait_for(lambda: _registered(r, "preprocess") == 2 and _registered(r, "generate") == 2, 120,
                 "both hosts' workers", 0.2)
    except Exception:
        print(fleet.logs())
        for s in fleet.all:
            s.stop()
        raise
    yield fleet
    for s in fleet.all:
        s.stop()
    r.flushdb()


def submit(stack: Stack, n: int) -> str:
    image = (FIXTURES / "chelsea.png").read_bytes()
    resp = requests.post(f"{stack.url}/v1/jobs", files=[("image", ("chelsea.png", image, "image/png"))],
                         data={"instruction": f"make it black and white, take {n}"}, timeout=30,
                         headers={"Cache-Control": "no-cache"})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def wait_done(fleet: Fleet, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        job = requests.get(f"{fleet.web.url}/v1/jobs/{job_id}", timeout=10).json()
        return dict(job) if job["status"] in TERMINAL else None

    try:
        return dict(wait_for(terminal, timeout_s, f"job {job_id}", 0.2))
    except TimeoutError:
        print(fleet.logs())
        raise


def local_blob_files(fleet: Fleet) -> list[Path]:
    return [p for s in fleet.all for p in (s.data_dir / "blobs").rglob("*") if p.is_file()]


def test_jobs_run_across_hosts_and_every_output_downloads(fleet: Fleet, moto_s3: MotoS3) -> None:
    # Given six jobs submitted to the web process
    ids = [submit(fleet.web, n) for n in range(6)]
    # When the two hosts' workers run them
    jobs = [wait_done(fleet, job_id) for job_id in ids]
    # Then every job succeeded
    assert [j["status"] for j in jobs] == ["succeeded"] * 6, jobs
    for job in jobs:
        # And its output streams from the web process, with its type and ETag
        streamed = requests.get(f"{fleet.web.url}/v1/jobs/{job['id']}/outputs/0", timeout=30)
        assert streamed.status_code == 200, streamed.text
        assert streamed.headers["Content-Type"] == job["outputs"][0]["mime_type"]
        assert streamed.headers["ETag"] == f'"{hashlib.sha256(streamed.content).hexdigest()}"'
        assert len(streamed.content) == job["outputs"][0]["bytes"]
        # And the redirecting web process sends the client to the store, which serves the same bytes
        moved = requests.get(f"{fleet.redirecting_web.url}/v1/jobs/{job['id']}/outputs/0", timeout=30,
                             allow_redirects=False)
        assert moved.status_code == 307 and moved.headers["Location"].startswith(moto_s3.endpoint)
        followed = requests.get(f"{fleet.redirecting_web.url}/v1/jobs/{job['id']}/outputs/0", timeout=30)
        assert followed.status_code == 200 and followed.content == streamed.content
        assert followed.headers["Content-Type"] == job["outputs"][0]["mime_type"]
    # And every blob is an object in the bucket; none is a file on any host's disk
    keys = set(moto_s3.keys(fleet.bucket))
    for job_id in ids:
        assert {f"nanoedit/jobs/{job_id}/{kind}/0" for kind in ("inputs", "prepared", "outputs")} <= keys
    assert local_blob_files(fleet) == []
    # And both hosts generated outputs (so blobs crossed between processes with different data dirs)
    for host, n in zip(fleet.hosts, ("a", "b"), strict=True):
        log = host.procs[f"generate-{n}"].log()
        assert any("nanoedit.generate[" in line and "succeeded in" in line for line in log.splitlines()), log
