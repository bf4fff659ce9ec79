"""Idempotency-Key replays and the result cache, over real HTTP against the running stack."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.conftest import FIXTURES
from tests.e2e.test_pipeline import wait_done
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def post(stack: Stack, instruction: str, headers: dict[str, str] | None = None,
         image: str = "coffee.png") -> requests.Response:
    return requests.post(f"{stack.url}/v1/jobs", timeout=30, headers=headers or {},
                         data={"instruction": instruction},
                         files=[("image", ("a.png", (FIXTURES / image).read_bytes()))])


def test_same_key_and_request_returns_the_same_job(stack: Stack) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = post(stack, "sharpen and rotate 180 degrees", key)
    assert first.status_code == 202
    again = post(stack, "sharpen and rotate 180 degrees", key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


def test_same_key_with_a_different_request_is_refused(stack: Stack) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    assert post(stack, "sharpen and rotate 270 degrees", key).status_code == 202
    resp = post(stack, "something else: invert", key)
    assert resp.status_code == 422
    body = resp.json()
    assert body["code"] == "idempotency_key_reused" and body["suggestion"]
    resp = post(stack, "sharpen and rotate 270 degrees", key, image="chelsea.png")  # same text, other image
    assert resp.status_code == 422


def test_malformed_idempotency_key_is_400(stack: Stack) -> None:
    resp = post(stack, "invert", {"Idempotency-Key": "x" * 300})
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_request"


def test_identical_request_is_served_from_the_cache_without_a_provider_call(stack: Stack) -> None:
    instruction = "blur radius 2 and mirror"
    first = wait_done(stack, post(stack, instruction, {"Cache-Control": "no-cache"}).json()["id"])
    assert first["status"] == "succeeded" and first["billed_provider_calls"] == 1
    # When the identical request comes again
    resp = post(stack, instruction)
    assert resp.status_code == 202
    again = resp.json()
    # Then it is already finished, from the cache, with no provider call and identical bytes
    assert again["status"] == "succeeded" and again["cached_from"] is not None
    assert again["billed_provider_calls"] == 0 and again["attempts"] == []
    a = requests.get(f"{stack.url}{first['outputs'][0]['url']}", timeout=10).content
    b = requests.get(f"{stack.url}{again['outputs'][0]['url']}", timeout=10).content
    assert a == b
    # And a client can opt out
    fresh = post(stack, instruction, {"Cache-Control": "no-cache"}).json()
    assert fresh["cached_from"] is None and fresh["status"] == "queued"
    assert wait_done(stack, fresh["id"])["billed_provider_calls"] == 1
