"""Inputs taken from earlier outputs (api/references.py): JSON {"job_id", "output"}, multipart from_job, parents
and lineage on GET /v1/jobs/{id}, and every way a reference is refused (nothing stored, nothing revealed)."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient

from api import create_app
from shared.blobs import MemoryBlobStore, input_key, output_key
from shared.clock import FakeClock
from shared.jobs.model import JobStatus, OutputResult
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings

PHOTO = (Path(__file__).resolve().parents[1] / "fixtures" / "chelsea.png").read_bytes()
OUT = b"\x89PNG\r\n\x1a\n" + b"fake output bytes"  # never decoded by the web process
ONE = {"Authorization": "Bearer k-one-123456"}
TWO = {"Authorization": "Bearer k-two-123456"}


@pytest.fixture
def client() -> FlaskClient:
    app = create_app(Settings(api_keys=("k-one-123456", "k-two-123456"), max_images=3), clock=FakeClock(),
                     redis_conn=fakeredis.FakeRedis(decode_responses=True), blobs=MemoryBlobStore(),
                     enqueuer=RecordingEnqueuer())
    return app.test_client()


def _svc(client: FlaskClient) -> Any:
    return client.application.extensions["nanoedit"]


def _upload(client: FlaskClient, headers: dict[str, str] = ONE, num_images: int = 1) -> str:
    resp = client.post("/v1/jobs", headers=headers, data={"instruction": "grayscale", "num_images": str(num_images),
                                                          "image": (io.BytesIO(PHOTO), "a.png")})
    assert resp.status_code == 202, resp.json
    return str(resp.json["id"])  # type: ignore[index]


def _finish(client: FlaskClient, job_id: str, data: bytes = OUT, index: int = 0) -> None:
    """Simulate the workers: output `index` stored and recorded as succeeded, the job succeeded."""
    svc = _svc(client)
    svc.store.transition(job_id, JobStatus.RUNNING)
    svc.blobs.put(output_key(job_id, index), data)
    svc.store.record_output(job_id, index, OutputResult.succeeded(
        mime_type="image/png", width=64, height=48, size=len(data), sha256=hashlib.sha256(data).hexdigest()))
    svc.store.finish(job_id, JobStatus.SUCCEEDED)


def _finished(client: FlaskClient, data: bytes = OUT) -> str:
    job_id = _upload(client)
    _finish(client, job_id, data)
    return job_id


def _json(client: FlaskClient, images: list[Any], headers: dict[str, str] = ONE, **extra: Any) -> Any:
    return client.post("/v1/jobs", headers=headers, json={"instruction": "sharper", "images": images, **extra})


def test_json_reference_copies_the_output_as_input_and_records_the_parent(client: FlaskClient) -> None:
    parent = _finished(client)
    resp = _json(client, [{"job_id": parent, "output": 0}])
    assert resp.status_code == 202, resp.json
    child = resp.json
    assert child["parents"] == [{"job_id": parent, "output": 0, "url": f"/v1/jobs/{parent}/outputs/0"}]
    svc = _svc(client)
    assert svc.blobs.get(input_key(child["id"], 0)) == OUT  # a copy: the child outlives its parent
    job = svc.store.get(child["id"])
    assert job.inputs[0].width == 64 and job.inputs[0].height == 48 and job.inputs[0].mime_type == "image/png"
    assert job.inputs[0].sha256 == hashlib.sha256(OUT).hexdigest()
    got = client.get(f"/v1/jobs/{child['id']}", headers=ONE).json
    assert got["parents"] == child["parents"]
    assert got["lineage"] == [{"job_id": parent, "output": 0, "url": f"/v1/jobs/{parent}/outputs/0",
                               "available": True}]
    assert "lineage" not in child  # only GET /v1/jobs/{id} follows the chain


def test_multipart_from_job_first_then_uploads(client: FlaskClient) -> None:
    parent = _finished(client)
    resp = client.post("/v1/jobs", headers=ONE, data={
        "instruction": "put them together", "operation": "compose", "from_job": f"{parent}:0",
        "image": (io.BytesIO(PHOTO), "b.png")})
    assert resp.status_code == 202, resp.json
    job = _svc(client).store.get(resp.json["id"])  # type: ignore[index]
    assert [i.sha256 for i in job.inputs] == [hashlib.sha256(OUT).hexdigest(), hashlib.sha256(PHOTO).hexdigest()]
    assert [p.to_dict() for p in job.parents] == [{"job_id": parent, "output": 0}]
    alone = client.post("/v1/jobs", headers=ONE, data={"instruction": "again", "from_job": parent},
                        content_type="multipart/form-data")  # = output 0
    assert alone.status_code == 202, alone.json
    assert alone.json["parents"][0]["output"] == 0  # type: ignore[index]


def test_json_mixed_with_uploads_keeps_the_order(client: FlaskClient) -> None:
    parent = _finished(client)
    upload = {"data": base64.b64encode(PHOTO).decode(), "mime_type": "image/png"}
    resp = _json(client, [upload, {"job_id": parent, "output": 0}], operation="style_transfer")
    assert resp.status_code == 202, resp.json
    job = _svc(client).store.get(resp.json["id"])
    assert [i.bytes for i in job.inputs] == [len(PHOTO), len(OUT)]


def test_a_chain_of_edits_shows_its_lineage(client: FlaskClient) -> None:
    a = _finished(client, b"\x89PNG a")
    b = _json(client, [{"job_id": a, "output": 0}]).json["id"]
    _finish(client, b, b"\x89PNG b")
    c = _json(client, [{"job_id": b, "output": 0}]).json["id"]
    lineage = client.get(f"/v1/jobs/{c}", headers=ONE).json["lineage"]
    assert [(e["job_id"], e["available"]) for e in lineage] == [(b, True), (a, True)]


def test_the_request_hash_includes_the_referenced_image(client: FlaskClient) -> None:
    one, two = _finished(client, b"\x89PNG one"), _finished(client, b"\x89PNG two")
    h1 = _svc(client).store.get(_json(client, [{"job_id": one, "output": 0}]).json["id"]).request_hash
    h2 = _svc(client).store.get(_json(client, [{"job_id": two, "output": 0}]).json["id"]).request_hash
    assert h1 != h2


def _refused(resp: Any, status: int, code: str) -> None:
    assert resp.status_code == status, resp.json
    assert resp.json["code"] == code and resp.json["suggestion"]


def test_another_owners_job_is_refused_like_an_unknown_one(client: FlaskClient) -> None:
    theirs = _finished(client)
    other = _json(client, [{"job_id": theirs, "output": 0}], headers=TWO)
    unknown = _json(client, [{"job_id": "0" * 32, "output": 0}], headers=TWO)
    _refused(other, 422, "invalid_reference")
    _refused(unknown, 422, "invalid_reference")
    assert other.json["details"].replace(theirs, "X") == unknown.json["details"].replace("0" * 32, "X")
    assert other.json["error"] == unknown.json["error"]
    _refused(client.post("/v1/jobs", headers=TWO, data={"instruction": "x", "from_job": theirs},
                         content_type="multipart/form-data"),
             422, "invalid_reference")


def test_output_not_succeeded_or_not_requested_is_refused_and_nothing_is_stored(client: FlaskClient) -> None:
    running = _upload(client, num_images=2)
    before = dict(_svc(client).blobs.blobs)
    _refused(_json(client, [{"job_id": running, "output": 0}]), 422, "invalid_reference")
    _refused(_json(client, [{"job_id": running, "output": 3}]), 422, "invalid_reference")
    failed = _upload(client)
    svc = _svc(client)
    svc.store.transition(failed, JobStatus.RUNNING)
    svc.store.fail(failed, "content_blocked", "no")
    _refused(_json(client, [{"job_id": failed, "output": 0}]), 422, "invalid_reference")
    assert svc.blobs.blobs.keys() - before.keys() <= {k for k in svc.blobs.blobs if failed in k}


def test_an_expired_parent_is_refused(client: FlaskClient) -> None:
    parent = _finished(client)
    svc = _svc(client)
    svc.blobs.delete_prefix(f"jobs/{parent}")  # its bytes went before its record
    _refused(_json(client, [{"job_id": parent, "output": 0}]), 422, "invalid_reference")


@pytest.mark.parametrize("item", [
    {"job_id": "a" * 32, "output": 0, "data": "aGk="},
    {"job_id": "a" * 32},
    {"output": 0},
    {"job_id": "A" * 32, "output": 0},
    {"job_id": "a" * 31, "output": 0},
    {"job_id": "a" * 32, "output": 4},
    {"job_id": "a" * 32, "output": -1},
    {"job_id": "a" * 32, "output": True},
    {"job_id": "a" * 32, "output": "0"},
    {"job_id": "a" * 32, "output": 0, "mime_type": "image/png"},
    {"job_id": 5, "output": 0},
])
def test_bad_reference_shapes_are_400(client: FlaskClient, item: dict[str, Any]) -> None:
    _refused(_json(client, [item]), 400, "invalid_request")


@pytest.mark.parametrize("value", ["", "a" * 31, "a" * 32 + ":", "a" * 32 + ":4", "a" * 32 + ":01",
                                   "a" * 32 + "\n", " " + "a" * 32, "A" * 32])
def test_bad_from_job_values_are_400(client: FlaskClient, value: str) -> None:
    _refused(client.post("/v1/jobs", headers=ONE, data={"instruction": "x", "from_job": value},
                         content_type="multipart/form-data"),
             400, "invalid_request")


def test_from_job_sent_as_a_file_is_400_not_ignored(client: FlaskClient) -> None:
    parent = _finished(client)
    _refused(client.post("/v1/jobs", headers=ONE, data={
        "instruction": "x", "from_job": (io.BytesIO(parent.encode()), "id.txt"),
        "image": (io.BytesIO(PHOTO), "a.png")}), 400, "invalid_request")


def test_references_count_against_the_image_limits(client: FlaskClient) -> None:
    parent = _finished(client)
    ref = {"job_id": parent, "output": 0}
    _refused(_json(client, [ref] * 4), 400, "too_many_images")  # max_images=3
    _refused(client.post("/v1/jobs", headers=ONE, data={
        "instruction": "x", "from_job": [parent] * 3, "image": (io.BytesIO(PHOTO), "a.png")}), 400, "too_many_images")
    _refused(_json(client, [ref], operation="compose"), 400, "not_enough_images")
    _refused(_json(client, [ref] * 3, operation="style_transfer"), 400, "too_many_images")
    assert _json(client, [ref, ref], operation="compose").status_code == 202


def test_the_openapi_document_describes_both_image_shapes_and_the_lineage(client: FlaskClient) -> None:
    from tests.api.test_openapi import schema_validator

    doc = client.get("/openapi.json").json
    parent = _finished(client)
    child = _json(client, [{"job_id": parent, "output": 0}]).json["id"]
    schema_validator(doc, "Job").validate(client.get(f"/v1/jobs/{child}", headers=ONE).json)
    sub = schema_validator(doc, "JobSubmissionJson")
    upload = {"data": base64.b64encode(b"x").decode()}
    assert sub.is_valid({"instruction": "x", "images": [{"job_id": parent, "output": 0}, upload]})
    for bad in ({"job_id": parent, "output": 0, **upload}, {"job_id": parent}, {"job_id": parent, "output": 4}):
        assert not sub.is_valid({"instruction": "x", "images": [bad]})
    form = schema_validator(doc, "JobSubmissionMultipart")
    assert form.is_valid({"instruction": "x", "from_job": [parent, f"{parent}:1"]})
    assert form.is_valid({"instruction": "x", "from_job": [parent], "image": ["b"], "operation": "compose"})
    assert not form.is_valid({"instruction": "x", "from_job": [parent], "operation": "compose"})
    assert not form.is_valid({"instruction": "x", "from_job": [parent] * 2, "image": ["b"],
                              "operation": "style_transfer"})
    assert not form.is_valid({"instruction": "x", "from_job": [parent] * 3, "image": ["b"]})  # max_images=3
    assert not form.is_valid({"instruction": "x"})
    assert not form.is_valid({"instruction": "x", "from_job": [f"{parent}:4"]})


def test_the_child_outlives_its_parent_and_the_lineage_marks_the_expired_ancestor(client: FlaskClient) -> None:
    svc = _svc(client)
    a = _finished(client, b"\x89PNG a")
    svc.clock.advance(20 * 3600)
    b = _json(client, [{"job_id": a, "output": 0}]).json["id"]
    svc.clock.advance(5 * 3600)  # A is past its 24 h; B is not
    svc.store.expire_due(svc.blobs)
    assert svc.blobs.get(input_key(b, 0)) == b"\x89PNG a"  # B's input is its own copy
    got = client.get(f"/v1/jobs/{b}", headers=ONE).json
    assert [(e["job_id"], e["available"]) for e in got["lineage"]] == [(a, False)]
    _refused(_json(client, [{"job_id": a, "output": 0}]), 422, "invalid_reference")  # not 410: nothing to probe
