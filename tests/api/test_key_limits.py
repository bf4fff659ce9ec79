"""Per-key limits at the API (api/keylimits.py, shared/keyquota.py) on a real Redis: RateLimit headers on every
/v1 response to a keyed caller, 429 rate_limited and too_many_jobs_waiting with Retry-After, per-key overrides
from the keys file, and no limits at all for anonymous callers (auth off)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from api import create_app
from shared.apikeys import ApiKey, KeyLimits, hash_key
from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.keyquota import KeyPolicy, RateState
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings

PHOTO = (Path(__file__).resolve().parents[1] / "fixtures" / "chelsea.png").read_bytes()
ALICE = {"X-API-Key": "alice-key-1234"}
BOB = {"Authorization": "Bearer bob-key-123456"}
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")


def make_client(r: redis.Redis, **settings: Any) -> FlaskClient:
    s = Settings(api_keys=("alice-key-1234", "bob-key-123456"), key_hash_secret="test-secret", **settings)
    app = create_app(s, clock=FakeClock(), redis_conn=r, blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer())
    return app.test_client()


def post(c: FlaskClient, headers: dict[str, str], **extra: str) -> Any:
    return c.post("/v1/jobs", headers={**headers, **extra},
                  data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png")})


def rate(resp: Any) -> tuple[int, int, int]:
    return (int(resp.headers["RateLimit-Limit"]), int(resp.headers["RateLimit-Remaining"]),
            int(resp.headers["RateLimit-Reset"]))


def test_headers_are_on_every_v1_response_and_count_down_only_on_submit(redis_db: redis.Redis) -> None:
    c = make_client(redis_db, key_submissions_per_min=5)
    # Before anything: the full quota, nothing to wait for
    assert rate(c.get("/v1/jobs", headers=ALICE)) == (5, 5, 0)
    # Each submission consumes one; the reset says when the next one comes back (within the 60 s window)
    first = post(c, ALICE)
    assert first.status_code == 202
    limit, remaining, reset = rate(first)
    assert (limit, remaining) == (5, 4) and 1 <= reset <= 60
    assert first.headers["RateLimit-Policy"] == "5;w=60"
    assert rate(post(c, ALICE))[1] == 3
    # Reads and errors report without consuming: a job read, a 404 job, an unknown route, a 422 submission
    job_id = first.json["id"]
    assert rate(c.get(f"/v1/jobs/{job_id}", headers=ALICE))[1] == 3
    assert rate(c.get(f"/v1/jobs/{'0' * 32}", headers=ALICE))[1] == 3
    missing_route = c.get("/v1/nothing-here", headers=ALICE)
    assert missing_route.status_code == 404 and rate(missing_route)[1] == 3
    bad = c.post("/v1/jobs", headers=ALICE, data={"instruction": "x", "image": (io.BytesIO(b"not an image"), "a")})
    assert bad.status_code in (415, 422) and rate(bad)[1] == 2  # every submission attempt counts
    # Each key has its own window
    assert rate(c.get("/v1/jobs", headers=BOB)) == (5, 5, 0)


def test_over_the_rate_is_429_rate_limited_with_retry_after(redis_db: redis.Redis) -> None:
    c = make_client(redis_db, key_submissions_per_min=2)
    assert [post(c, ALICE).status_code for _ in range(2)] == [202, 202]

    refused = post(c, ALICE)

    assert refused.status_code == 429
    body = refused.json
    assert body["code"] == "rate_limited" and body["suggestion"] and "2 jobs per 60 s" in body["details"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert rate(refused)[:2] == (2, 0) and rate(refused)[2] == int(refused.headers["Retry-After"])
    assert post(c, BOB).status_code == 202  # another key is not affected


def test_too_many_jobs_waiting_is_429_until_one_finishes(redis_db: redis.Redis) -> None:
    c = make_client(redis_db, key_max_waiting_jobs=2)
    ids = [post(c, ALICE).json["id"] for _ in range(2)]

    refused = post(c, ALICE)

    assert refused.status_code == 429
    assert refused.json["code"] == "too_many_jobs_waiting" and refused.json["suggestion"]
    assert refused.json["details"] == "queued or running jobs of this key: 2 (at most 2 at once)"
    assert int(refused.headers["Retry-After"]) >= 1
    assert all(h in refused.headers for h in RATE_HEADERS)
    assert post(c, BOB).status_code == 202  # counted per key
    # A finished (here: canceled) job no longer counts
    assert c.delete(f"/v1/jobs/{ids[0]}", headers=ALICE).json["status"] == "canceled"
    assert post(c, ALICE).status_code == 202


def test_an_idempotent_replay_gets_its_job_back_even_at_the_waiting_limit(redis_db: redis.Redis) -> None:
    c = make_client(redis_db, key_max_waiting_jobs=1)
    first = post(c, ALICE, **{"Idempotency-Key": "k-1"})
    replay = post(c, ALICE, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 202 and replay.status_code == 200 and replay.json["id"] == first.json["id"]
    assert post(c, ALICE, **{"Idempotency-Key": "k-2"}).json["code"] == "too_many_jobs_waiting"


def test_keys_file_limits_override_the_defaults(redis_db: redis.Redis, tmp_path: Path) -> None:
    secret = "test-secret"
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[[keys]]\nname = "carol"\nkey_hash = "{hash_key(secret.encode(), "carol-key-1234")}"\n'
                    "submissions_per_minute = 1\nmax_waiting_jobs = 0\n")
    c = make_client(redis_db, api_keys_file=str(keys), key_submissions_per_min=50, key_max_waiting_jobs=1)
    carol = {"X-API-Key": "carol-key-1234"}
    assert rate(c.get("/v1/jobs", headers=carol))[0] == 1  # her own per-minute limit
    assert rate(c.get("/v1/jobs", headers=ALICE))[0] == 50  # the deployment default
    assert post(c, carol).status_code == 202
    assert post(c, carol).json["code"] == "rate_limited"


def test_a_key_with_limit_zero_and_callers_without_a_key_get_no_headers(redis_db: redis.Redis) -> None:
    c = make_client(redis_db, key_submissions_per_min=0)
    resp = post(c, ALICE)
    assert resp.status_code == 202 and not any(h in resp.headers for h in RATE_HEADERS)
    c2 = make_client(redis_db)
    anonymous = c2.get("/v1/jobs")
    assert anonymous.status_code == 401 and "RateLimit-Limit" not in anonymous.headers
    assert "RateLimit-Limit" not in c2.get("/healthz", headers=ALICE).headers  # only /v1 routes


def test_anonymous_callers_have_no_per_key_limits(redis_db: redis.Redis) -> None:
    app = create_app(Settings(key_submissions_per_min=3, key_max_waiting_jobs=3), clock=FakeClock(),
                     redis_conn=redis_db, blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer())
    c = app.test_client()
    codes = [post(c, {}).status_code for _ in range(10)]
    assert codes == [202] * 10
    assert "RateLimit-Limit" not in c.get("/v1/jobs").headers
    enq: RecordingEnqueuer = app.extensions["nanoedit"].enqueuer
    assert set(enq.owners.values()) == {"anonymous"}  # admitted through the anonymous fair line


def test_submissions_are_admitted_through_their_owners_fair_line(redis_db: redis.Redis) -> None:
    c = make_client(redis_db)
    a, b = post(c, ALICE).json["id"], post(c, BOB).json["id"]
    enq: RecordingEnqueuer = c.application.extensions["nanoedit"].enqueuer
    assert enq.owners[a] != enq.owners[b] and enq.owners[a].startswith("key-")


@pytest.mark.parametrize(("limits", "expected"), [
    (KeyLimits(), KeyPolicy(120, 1000)),
    (KeyLimits(submissions_per_minute=7), KeyPolicy(7, 1000)),
    (KeyLimits(submissions_per_minute=0, max_waiting_jobs=5), KeyPolicy(0, 5)),
])
def test_policy_takes_the_keys_own_limits_else_the_defaults(limits: KeyLimits, expected: KeyPolicy) -> None:
    key = ApiKey(name="k", key_hash="hmac-sha256:" + "0" * 64, limits=limits)
    assert KeyPolicy.for_key(key, Settings()) == expected


def test_rate_state_headers() -> None:
    state = RateState(limit=10, remaining=0, reset_s=0, allowed=False)
    assert state.retry_after_s == 1  # never tell a client to retry after 0 s
    assert state.headers() == {"RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "0",
                               "RateLimit-Policy": "10;w=60"}


def test_openapi_documents_the_rate_limit_headers_and_both_429_codes(tmp_path: Path) -> None:
    from api.openapi import openapi_document

    doc = openapi_document(Settings(data_dir=tmp_path, api_keys=("k1",)))
    submit = doc["paths"]["/v1/jobs"]["post"]
    assert {"rate_limited", "too_many_jobs_waiting"} <= set(doc["components"]["schemas"]["Error"]["properties"]
                                                           ["code"]["enum"])
    assert "too_many_jobs_waiting" in submit["responses"]["429"]["description"]
    assert "Retry-After" in submit["responses"]["429"]["headers"]
    assert "submissions per minute" in submit["description"]
    assert set(RATE_HEADERS) <= set(doc["components"]["headers"])
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for response in op["responses"].values():
                assert ("RateLimit-Remaining" in response["headers"]) == path.startswith("/v1"), path
