"""A key's monthly budget over HTTP (issue item 4): real redis-server, real workers, the real google-genai SDK →
the fake Gemini server (which reports usage per model and image size, so jobs have a cost). A key with a budget
of 0.10 USD gets its first 1K job (estimated ≈ 0.07 USD); once that job's cost is in the usage ledger, the next
one (spent ≈ 0.07 + estimate ≈ 0.07 > 0.10) is refused with 402 budget_exhausted before anything is stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from shared.apikeys import hash_key
from tests.conftest import FIXTURES
from tests.support.stack import RedisServer, Stack, gemini_env, start_stack
from workers.fake_gemini import FakeGeminiServer

pytestmark = pytest.mark.e2e

DB = 30
SECRET = "budget-e2e-hash-secret"
TINY_KEY = "tiny-budget-key-0123456789"
OTHER_KEY = "other-key-0123456789abcdef"


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, fake: FakeGeminiServer, tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("budget")
    keys = data / "keys.toml"
    keys.write_text(f"""
[[keys]]
name = "tiny"
key_hash = "{hash_key(SECRET.encode(), TINY_KEY)}"
monthly_budget_usd = 0.10

[[keys]]
name = "other"
key_hash = "{hash_key(SECRET.encode(), OTHER_KEY)}"
""")
    s = start_stack(redis_server.url(DB), data, generate=(1,),
                    **gemini_env(fake.base_url, NANOEDIT_API_KEYS_FILE=str(keys), NANOEDIT_KEY_HASH_SECRET=SECRET))
    yield s
    s.stop()


def submit(stack: Stack, key: str) -> requests.Response:
    return requests.post(f"{stack.url}/v1/jobs", timeout=60, headers={"X-API-Key": key, "Cache-Control": "no-cache"},
                         data={"instruction": "edit it", "image_size": "1K"},
                         files=[("image", ("a.png", (FIXTURES / "chelsea.png").read_bytes()))])


def test_a_key_over_its_monthly_budget_gets_402_budget_exhausted(stack: Stack, fake: FakeGeminiServer) -> None:
    fake.configure(scenario="ok")
    # Given a first job of the tiny key that fits its budget and succeeds (and so costs something)
    first = submit(stack, TINY_KEY)
    assert first.status_code == 202, first.text
    job: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = requests.get(f"{stack.url}/v1/jobs/{first.json()['id']}", headers={"X-API-Key": TINY_KEY},
                           timeout=10).json()
        if job["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "succeeded" and job["cost_usd"] > 0, job
    usage = requests.get(f"{stack.url}/v1/usage", params={"period": "month"}, headers={"X-API-Key": TINY_KEY},
                         timeout=10).json()
    assert usage["cost_usd"] > 0.05, usage
    # When it submits another
    refused = submit(stack, TINY_KEY)
    # Then 402 budget_exhausted with a suggestion, and no second job exists
    assert refused.status_code == 402, refused.text
    body = refused.json()
    assert body["code"] == "budget_exhausted" and body["status_code"] == 402 and body["suggestion"]
    listed = requests.get(f"{stack.url}/v1/jobs", headers={"X-API-Key": TINY_KEY}, timeout=10).json()["jobs"]
    assert [j["id"] for j in listed] == [first.json()["id"]]
    # and a key without a budget is not affected
    assert submit(stack, OTHER_KEY).status_code == 202
