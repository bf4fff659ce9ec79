"""Model and per-job options at intake (Flask test client): the catalogue decides, unknown fields are refused,
a retired model is remapped, and the job shows its options, usage and estimated cost."""

from __future__ import annotations

import base64
import datetime as dt
import io
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient

from api import create_app
from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.jobs.model import Attempt, Job, JobStage, JobStatus
from shared.jobs.options import Usage
from shared.jobs.view import public_view
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings

PHOTO = (Path(__file__).resolve().parents[1] / "fixtures" / "chelsea.png").read_bytes()
NOV_2026 = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC).timestamp()


def make_client(provider: str = "gemini", now: float = NOV_2026) -> FlaskClient:
    settings = Settings(provider=provider, gemini_api_key="k" if provider == "gemini" else "")
    app = create_app(settings, clock=FakeClock(now), redis_conn=fakeredis.FakeRedis(decode_responses=True),
                     blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer())
    return app.test_client()


@pytest.fixture
def client() -> FlaskClient:
    return make_client()


def post_form(client: FlaskClient, **fields: Any) -> Any:
    return client.post("/v1/jobs", data={"instruction": "grayscale", "image": (io.BytesIO(PHOTO), "a.png"),
                                         **fields})


def post_json(client: FlaskClient, **fields: Any) -> Any:
    return client.post("/v1/jobs", json={"instruction": "grayscale",
                                         "images": [{"data": base64.b64encode(PHOTO).decode()}], **fields})


@pytest.mark.parametrize("post", [post_form, post_json])
def test_options_are_stored_and_shown(client: FlaskClient, post: Any) -> None:
    resp = post(client, model="gemini-3-pro-image", aspect_ratio="16:9", image_size="4K", thinking_level="high")
    assert resp.status_code == 202, resp.json
    job = resp.json
    assert job["model"] == "gemini-3-pro-image" and job["model_requested"] == "gemini-3-pro-image"
    assert job["options"] == {"aspect_ratio": "16:9", "image_size": "4K", "thinking_level": "high",
                              "output_format": None, "quality": None}
    assert job["usage"] is None and job["cost_usd"] is None and job["cost_is_estimate"] is True
    again = client.get(f"/v1/jobs/{job['id']}").json
    assert again["options"] == job["options"]


def test_no_model_runs_the_default(client: FlaskClient) -> None:
    job = post_form(client).json
    assert job["model"] == "gemini-3.1-flash-image" and job["model_requested"] is None


@pytest.mark.parametrize("post", [post_form, post_json])
def test_a_retired_model_gets_its_replacement_and_says_so(client: FlaskClient, post: Any) -> None:
    job = post(client, model="gemini-2.5-flash-image").json
    assert job["model_requested"] == "gemini-2.5-flash-image" and job["model"] == "gemini-3.1-flash-image"
    job = post(client, model="gemini-3-pro-image-preview").json
    assert job["model"] == "gemini-3-pro-image"


def test_before_its_shutdown_date_a_model_is_itself() -> None:
    client = make_client(now=dt.datetime(2026, 10, 1, tzinfo=dt.UTC).timestamp())
    assert post_form(client, model="gemini-2.5-flash-image").json["model"] == "gemini-2.5-flash-image"


@pytest.mark.parametrize("post", [post_form, post_json])
@pytest.mark.parametrize(("fields", "allowed"), [
    ({"model": "gemini-3.1-flash-lite-image", "image_size": "2K"}, "1K"),
    ({"aspect_ratio": "7:3"}, "16:9"),
    ({"image_size": "1k"}, "1K, 2K, 4K"),
    ({"thinking_level": "max"}, "minimal, high"),
    ({"model": "gemini-9"}, "gemini-3-pro-image"),
])
def test_invalid_options_are_422_with_the_allowed_values(client: FlaskClient, post: Any, fields: dict[str, str],
                                                         allowed: str) -> None:
    resp = post(client, **fields)
    assert resp.status_code == 422 and resp.json["code"] == "invalid_option", resp.json
    assert allowed in resp.json["suggestion"]


@pytest.mark.parametrize("post", [post_form, post_json])
def test_unknown_fields_are_refused_not_ignored(client: FlaskClient, post: Any) -> None:
    resp = post(client, size="4K")
    assert resp.status_code == 422 and resp.json["code"] == "unknown_field"
    assert "'size'" in resp.json["details"] and "aspect_ratio" in resp.json["suggestion"]


def test_the_local_provider_still_checks_options_against_the_catalogue() -> None:
    client = make_client("local")
    assert post_form(client, image_size="8K").status_code == 422
    job = post_form(client, image_size="2K").json
    assert job["model"] == "local" and job["options"]["image_size"] == "2K"


def test_models_route_lists_the_catalogue(client: FlaskClient) -> None:
    body = client.get("/v1/models").json
    assert body["default"] == "gemini-3.1-flash-image"
    by_id = {m["id"]: m for m in body["models"]}
    assert by_id["gemini-3.1-flash-lite-image"]["image_sizes"] == ["1K"]
    assert by_id["gemini-2.5-flash-image"]["retired"] is True
    assert by_id["gemini-2.5-flash-image"]["replacement"] == "gemini-3.1-flash-image"
    assert by_id["gemini-3-pro-image"]["price"]["source"] and by_id["gemini-3-pro-image"]["price"]["as_of"]


def test_usage_and_cost_add_up_across_retries_and_outputs() -> None:
    u = Usage(prompt_tokens=300, output_tokens=1128, output_image_tokens=1120, total_tokens=1428)
    attempts = [Attempt(output=0, n=1, outcome="timeout", at=None, duration_ms=5),  # no answer: nothing
                Attempt(output=0, n=2, outcome="succeeded", at=None, duration_ms=5, usage=u, cost_usd=0.07),
                Attempt(output=1, n=1, outcome="no_image", at=None, duration_ms=5, usage=u, cost_usd=0.01),
                Attempt(output=1, n=2, outcome="succeeded", at=None, duration_ms=5, usage=u, cost_usd=0.07)]
    job = Job(id="a" * 32, owner="o", status=JobStatus.SUCCEEDED, stage=JobStage.DONE, operation="edit",
              num_images=2, instruction="x", image_description="", created_at=0, expires_at=1, deadline_at=1,
              attempts=attempts)
    view = public_view(job)
    assert view["usage"]["prompt_tokens"] == 900 and view["usage"]["output_image_tokens"] == 3360
    assert view["cost_usd"] == pytest.approx(0.15)


def test_usage_route_gives_the_callers_totals_and_operators_every_key() -> None:
    from shared.usage_ledger import UsageLedger

    r = fakeredis.FakeRedis(decode_responses=True)
    clock = FakeClock(NOV_2026)
    settings = Settings(api_keys=("key-one", "key-two"), admin_token="adm-" + "x" * 30)
    app = create_app(settings, clock=clock, redis_conn=r, blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer())
    client = app.test_client()
    me = client.get("/v1/usage", headers={"X-API-Key": "key-one"}).json
    ledger = UsageLedger(r, settings.redis_prefix, clock)
    u = Usage(prompt_tokens=10, output_tokens=1130, output_image_tokens=1120, total_tokens=1140)
    ledger.record(me["owner"], u, 0.07)
    ledger.record(me["owner"], u, 0.07)
    ledger.record("someone-else", u, 0.5)
    me = client.get("/v1/usage", headers={"X-API-Key": "key-one"}, query_string={"period": "month"}).json
    assert me["calls"] == 2 and me["usage"]["output_image_tokens"] == 2240
    assert me["cost_usd"] == pytest.approx(0.14) and me["cost_is_estimate"] is True
    assert (me["from"], me["to"]) == ("2026-11-01", "2026-11-30")
    ops = client.get("/v1/usage", headers={"Authorization": f"Bearer {settings.admin_token}"}).json
    assert {row["owner"]: row["calls"] for row in ops["keys"]} == {me["owner"]: 2, "someone-else": 1}
    assert client.get("/v1/usage", headers={"X-API-Key": "key-one"},
                      query_string={"period": "year"}).status_code == 400


@pytest.mark.parametrize("post", [post_form, post_json])
def test_output_format_and_quality(client: FlaskClient, post: Any) -> None:
    job = post(client, output_format="webp", quality=80).json
    assert job["options"]["output_format"] == "webp" and job["options"]["quality"] == 80
    assert post(client, output_format="gif").json["code"] == "invalid_option"
    assert post(client, quality=80).json["code"] == "invalid_option"  # quality needs jpeg or webp
    assert post(client, output_format="jpeg", quality=101).json["code"] == "invalid_request"
