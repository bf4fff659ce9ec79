"""Per-key monthly budgets at submission (api/budget.py, shared/budget.py) on a real Redis: 402 budget_exhausted
before anything is stored, from the month-to-date spend in the usage ledger plus the job's estimate."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from api import create_app
from shared.apikeys import hash_key
from shared.blobs import MemoryBlobStore
from shared.budget import job_cost_estimate_usd
from shared.catalogue import load_catalogue
from shared.clock import FakeClock
from shared.jobs.options import Usage
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings
from shared.usage_ledger import UsageLedger

PHOTO = (Path(__file__).resolve().parents[1] / "fixtures" / "chelsea.png").read_bytes()
SECRET = "test-secret"
TINY = {"X-API-Key": "tiny-key-123456"}  # keys file: monthly_budget_usd = 0.5
OPEN = {"X-API-Key": "open-key-123456"}  # keys file: monthly_budget_usd = 0 (none, whatever the default)
PLAIN = {"X-API-Key": "plain-key-1234"}  # NANOEDIT_API_KEYS: the deployment default applies
NOV_30 = 1_795_996_800.0 + 12 * 3600  # 2026-11-30T12:00:00Z
DEC_1 = NOV_30 + 86400


def make_client(r: redis.Redis, tmp_path: Path, clock: FakeClock, **settings: Any) -> tuple[FlaskClient, Settings]:
    keys = tmp_path / "keys.toml"
    keys.write_text(f"""
[[keys]]
name = "tiny"
key_hash = "{hash_key(SECRET.encode(), 'tiny-key-123456')}"
monthly_budget_usd = 0.5

[[keys]]
name = "open"
key_hash = "{hash_key(SECRET.encode(), 'open-key-123456')}"
monthly_budget_usd = 0
""")
    s = Settings(api_keys=("plain-key-1234",), api_keys_file=str(keys), key_hash_secret=SECRET, provider="gemini",
                 gemini_api_key="not-used-by-the-web-process", **settings)
    enqueuer = RecordingEnqueuer()
    app = create_app(s, clock=clock, redis_conn=r, blobs=MemoryBlobStore(), enqueuer=enqueuer)
    return app.test_client(), s


def post(c: FlaskClient, headers: dict[str, str], **fields: str) -> Any:
    return c.post("/v1/jobs", headers={**headers, "Cache-Control": "no-cache"},
                  data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png"), **fields})


def owner_of(c: FlaskClient, headers: dict[str, str]) -> str:
    resp = post(c, headers)
    assert resp.status_code == 202, resp.json
    return str(resp.json["id"])


def spend(r: redis.Redis, s: Settings, clock: FakeClock, owner: str, usd: float) -> None:
    UsageLedger(r, s.redis_prefix, clock).record(owner, Usage(prompt_tokens=1), usd)


def test_estimate_is_per_output_at_the_requested_size_and_the_largest_when_unset() -> None:
    spec = load_catalogue("").get("gemini-3.1-flash-image")
    one_1k = job_cost_estimate_usd(spec, num_images=1, image_size="1K", input_images=1)
    assert one_1k > 0
    assert job_cost_estimate_usd(spec, num_images=3, image_size="1K", input_images=1) == pytest.approx(3 * one_1k)
    assert job_cost_estimate_usd(spec, num_images=1, image_size="", input_images=1) == pytest.approx(
        job_cost_estimate_usd(spec, num_images=1, image_size="4K", input_images=1))
    assert job_cost_estimate_usd(None, num_images=4, image_size="", input_images=8) == 0.0


def test_a_job_over_the_monthly_budget_is_refused_with_402_before_anything_is_stored(
        redis_db: redis.Redis, tmp_path: Path) -> None:
    clock = FakeClock(NOV_30)
    c, s = make_client(redis_db, tmp_path, clock)
    # Given the tiny key (0.50 USD a month) has already spent 0.49 USD this month
    job_id = owner_of(c, TINY)
    owner = redis_db.hget(f"{s.redis_prefix}:job:{job_id}", "owner")
    assert isinstance(owner, str)
    spend(redis_db, s, clock, owner, 0.49)
    jobs_before = c.get("/v1/jobs", headers=TINY).json["jobs"]
    # When it submits a job estimated above the 0.01 USD left
    refused = post(c, TINY)
    # Then 402 budget_exhausted with a suggestion and the numbers, and no job was created
    assert refused.status_code == 402, refused.json
    body = refused.json
    assert body["code"] == "budget_exhausted" and body["suggestion"] and body["status_code"] == 402
    assert "0.4900" in body["details"] and "0.50" in body["details"]
    assert c.get("/v1/jobs", headers=TINY).json["jobs"] == jobs_before
    # and a key without a budget, and one under the deployment default (none), are not affected
    assert post(c, OPEN).status_code == 202
    assert post(c, PLAIN).status_code == 202
    # and in the next month (UTC) the budget is fresh again
    clock.sleep(DEC_1 - clock.now())
    assert post(c, TINY).status_code == 202


def test_the_deployment_default_applies_to_keys_without_their_own(redis_db: redis.Redis, tmp_path: Path) -> None:
    clock = FakeClock(NOV_30)
    c, _ = make_client(redis_db, tmp_path, clock, key_monthly_budget_usd=0.000001)
    # Even the first job is estimated above a budget of a millionth of a dollar
    refused = post(c, PLAIN)
    assert refused.status_code == 402 and refused.json["code"] == "budget_exhausted"
    assert post(c, OPEN).status_code == 202  # its own 0 = no budget wins over the default


def test_no_budget_check_with_auth_off(redis_db: redis.Redis) -> None:
    s = Settings(key_monthly_budget_usd=0.000001)
    app = create_app(s, clock=FakeClock(NOV_30), redis_conn=redis_db, blobs=MemoryBlobStore(),
                     enqueuer=RecordingEnqueuer())
    assert post(app.test_client(), {}).status_code == 202
