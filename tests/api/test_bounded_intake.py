"""Bounded intake and request hygiene at the route level (Flask test client, fakeredis, in-memory blobs).

Every malformed body, field, cursor, number or duration is a 4xx with the error body, never a 500, and nothing
invalid is stored; the web process never decodes base64 or pixels it is about to refuse.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api import create_app
from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings

PHOTO = (Path(__file__).resolve().parents[1] / "fixtures" / "chelsea.png").read_bytes()
T0 = 1_700_000_000.0


class Env:
    def __init__(self, **settings: Any) -> None:
        self.redis = fakeredis.FakeRedis(decode_responses=True)
        self.blobs = MemoryBlobStore()
        self.settings = Settings(**settings)
        self.app = create_app(self.settings, clock=FakeClock(T0), redis_conn=self.redis, blobs=self.blobs,
                              enqueuer=RecordingEnqueuer())
        self.client: FlaskClient = self.app.test_client()

    def nothing_stored(self) -> bool:
        return not self.blobs.blobs and not [k for k in self.redis.keys("nanoedit:job:*")]


@pytest.fixture
def env() -> Env:
    return Env()


def error(resp: TestResponse, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:500])
    body = resp.json
    assert isinstance(body, dict)
    assert body["code"] == code and body["status_code"] == status and body["error"] and body["suggestion"], body
    assert set(body) >= {"error", "code", "details", "suggestion", "status_code"}
    return body


def form(**fields: Any) -> dict[str, Any]:
    return {"image": (io.BytesIO(PHOTO), "a.png"), "instruction": "grayscale", **fields}


# --- bodies -------------------------------------------------------------------------------------------------

def test_url_encoded_body_is_415_before_it_is_parsed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import werkzeug.formparser

    def never(*_: object, **__: object) -> None:
        raise AssertionError("the url-encoded body was parsed")

    monkeypatch.setattr(werkzeug.formparser.FormDataParser, "_parse_urlencoded", never)
    resp = env.client.post("/v1/jobs", data="instruction=" + "x" * 100_000,
                           content_type="application/x-www-form-urlencoded")
    error(resp, 415, "unsupported_media_type")
    assert env.nothing_stored()


def test_json_over_its_cap_is_413_from_the_content_length() -> None:
    env = Env(max_json_bytes=4096)
    resp = env.client.post("/v1/jobs", data=json.dumps({"instruction": "x", "images": ["A" * 10_000]}),
                           content_type="application/json")
    body = error(resp, 413, "payload_too_large")
    assert "4096" in body["details"]


@pytest.mark.parametrize("raw", [
    "[" * 100_000 + "]" * 100_000,
    '{"instruction": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"a": ' * 40 + "1" + "}" * 40,
    "[" + "[]," * 50_000 + "[]]",
    '{"instruction": "x", "num_images": NaN}',
    '{"instruction": "x", "num_images": Infinity}',
    '{"instruction": "x", "num_images": 1e999}',
    '{"instruction": "x", "instruction": "y"}',
    '{"instruction": "\\ud800"}',
    '{"instruction": "x", "num_images": ' + "9" * 5000 + "}",
    '{"instruction": "x",',
    '"just a string"',
])
def test_hostile_json_is_400_never_500(env: Env, raw: str) -> None:
    error(env.client.post("/v1/jobs", data=raw, content_type="application/json"), 400, "invalid_request")
    assert env.nothing_stored()


def test_json_with_invalid_utf8_is_400(env: Env) -> None:
    resp = env.client.post("/v1/jobs", data=b'{"instruction": "\xff\xfe"}', content_type="application/json")
    error(resp, 400, "invalid_request")


def test_a_400_digit_num_images_is_400_with_a_short_detail(env: Env) -> None:
    raw = json.dumps({"instruction": "x", "images": [base64.b64encode(PHOTO).decode()]})[:-1] + ', "num_images": ' \
        + "9" * 400 + "}"
    body = error(env.client.post("/v1/jobs", data=raw, content_type="application/json"), 400, "invalid_request")
    assert len(body["details"]) < 80


def test_oversize_base64_is_refused_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    import api.intake

    env = Env(max_image_bytes=2048)

    def never(*_: object, **__: object) -> bytes:
        raise AssertionError("base64 was decoded")

    monkeypatch.setattr(api.intake, "_b64", never)
    resp = env.client.post("/v1/jobs", json={"instruction": "x", "images": [base64.b64encode(PHOTO).decode()]})
    body = error(resp, 413, "image_too_large")
    assert "2048" in body["details"]


def test_json_image_count_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch, env: Env) -> None:
    import api.intake

    monkeypatch.setattr(api.intake, "_b64", lambda *_: (_ for _ in ()).throw(AssertionError("decoded")))
    resp = env.client.post("/v1/jobs", json={"instruction": "x", "images": ["AAAA"] * 9})
    error(resp, 400, "too_many_images")


# --- multipart ----------------------------------------------------------------------------------------------

def test_too_many_parts_is_413() -> None:
    env = Env(max_form_parts=8)
    data = {"instruction": "x", **{f"f{i}": "y" for i in range(20)}}
    body = error(env.client.post("/v1/jobs", data=data, content_type="multipart/form-data"), 413,
                 "payload_too_large")
    assert "8 parts" in body["details"]


def test_text_field_over_its_byte_cap_is_413(env: Env) -> None:
    body = error(env.client.post("/v1/jobs", data=form(instruction="x" * 300_000)), 413, "payload_too_large")
    assert str(env.settings.max_form_field_bytes) in body["details"]


def test_instruction_limit_is_the_setting(env: Env) -> None:
    assert env.client.post("/v1/jobs", data=form(instruction="x" * 10_000)).status_code == 202
    body = error(env.client.post("/v1/jobs", data=form(instruction="x" * 10_001)), 400, "invalid_request")
    assert "10000" in body["suggestion"]


@pytest.mark.parametrize(("value", "what"), [("gray\x00scale", "U+0000"), ("gray\x1bscale", "U+001B")])
def test_nul_and_control_characters_in_fields_are_400(env: Env, value: str, what: str) -> None:
    body = error(env.client.post("/v1/jobs", data=form(instruction=value)), 400, "invalid_request")
    assert what in body["details"]
    assert env.nothing_stored()


def test_invalid_utf8_in_a_field_is_400(env: Env) -> None:
    # Given a multipart text part whose bytes are not UTF-8 (werkzeug decodes them with "replace")
    boundary = "b0undary"
    raw = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"instruction\"\r\n\r\n".encode()
           + b"gray\xff\xfescale" + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
           f"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n".encode() + PHOTO
           + f"\r\n--{boundary}--\r\n".encode())
    resp = env.client.post("/v1/jobs", data=raw, content_type=f"multipart/form-data; boundary={boundary}")
    # Then it is refused, naming the problem
    assert "invalid UTF-8" in error(resp, 400, "invalid_request")["details"]
    assert env.nothing_stored()


def test_duplicate_text_fields_are_400(env: Env) -> None:
    resp = env.client.post("/v1/jobs", data={"image": (io.BytesIO(PHOTO), "a.png"), "instruction": ["a", "b"]})
    body = error(resp, 400, "invalid_request")
    assert "2 times" in body["details"]


def test_fifty_image_parts_are_too_many_images_and_none_is_read(env: Env) -> None:
    data = {"instruction": "x", "image": [(io.BytesIO(PHOTO), f"{i}.png") for i in range(50)]}
    error(env.client.post("/v1/jobs", data=data), 400, "too_many_images")


def test_multipart_without_boundary_is_400(env: Env) -> None:
    error(env.client.post("/v1/jobs", data=b"x", content_type="multipart/form-data"), 400, "invalid_request")


# --- cursors and other numbers ------------------------------------------------------------------------------

def _cursor(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value, allow_nan=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    _cursor([float("nan"), "a" * 32]), _cursor([float("inf"), "a" * 32]), _cursor([-1, "a" * 32]),
    _cursor([int("9" * 400), "a" * 32]), _cursor(b"[1e999, \"" + b"a" * 32 + b"\"]"), _cursor([[1, 2], "a" * 32]),
    _cursor([1, ["a" * 32]]), _cursor([1, "not-a-job-id"]), _cursor([True, "a" * 32]), _cursor([1]),
    _cursor({"a": 1}), _cursor(b"[" * 60 + b"]" * 60), _cursor(b"\xff\xfe"), "A" * 500, "!!!", "a b",
])
def test_malformed_cursors_are_400(env: Env, cursor: str) -> None:
    resp = env.client.get("/v1/jobs", query_string={"cursor": cursor})
    body = error(resp, 400, "invalid_request")
    assert "next_cursor" in body["suggestion"]


@pytest.mark.parametrize("patch", [{"rpm": 10**400}, {"rpm": 1e300}, {"lease_s": -1e300}, {"concurrency": "1"}])
def test_admin_limits_refuse_huge_numbers(env: Env, patch: dict[str, Any]) -> None:
    raw = json.dumps(patch)
    error(env.client.patch("/v1/admin/limits", data=raw, content_type="application/json"), 400, "invalid_request")


@pytest.mark.parametrize("raw", ['{"rpm": NaN}', '{"rpm": Infinity}', '{"rpm": 1e999}', "[" * 200 + "]" * 200])
def test_admin_limits_refuse_non_finite_json(env: Env, raw: str) -> None:
    error(env.client.patch("/v1/admin/limits", data=raw, content_type="application/json"), 400, "invalid_request")


# --- silences -------------------------------------------------------------------------------------------------

SILENCE = {"matchers": {"group": "job_errors"}, "comment": "deploy"}


@pytest.mark.parametrize("raw", [
    '{"matchers": {"group": "g"}, "comment": "c", "duration_s": NaN}',
    '{"matchers": {"group": "g"}, "comment": "c", "duration_s": Infinity}',
    '{"matchers": {"group": "g"}, "comment": "c", "duration_s": 1e999}',
    '{"matchers": {"group": "g"}, "comment": "c", "duration_s": -5}',
    '{"matchers": {"group": "g"}, "comment": "c", "duration_s": 0}',
    '{"matchers": {"group": "g"}, "comment": "c", "duration_s": 1e12}',
    '{"matchers": {"group": "g"}, "comment": "c", "duration_s": ' + "9" * 400 + "}",
    '{"matchers": {"group": "g"}, "comment": "c", "duration_s": "3600"}',
    '{"matchers": {"group": "g"}, "comment": "c", "ends_at": "0001-01-01T00:00:00+14:00"}',
    '{"matchers": {"group": "g"}, "comment": "c", "ends_at": "9999-12-31T23:59:59-14:00"}',
    '{"matchers": {"group": "g"}, "comment": "c", "ends_at": "2030-01-01T00:00:00"}',
    '{"matchers": {"group": "g"}, "comment": "c", "ends_at": 1893456000}',
    '{"matchers": {"group": "g"}, "comment": "c", "starts_at": "2500-01-01T00:00:00Z", "duration_s": 60}',
    '{"matchers": {"group": "' + "x" * 300 + '"}, "comment": "c", "duration_s": 60}',
])
def test_bad_silences_are_400_and_never_stored(env: Env, raw: str) -> None:
    resp = env.client.post("/v1/monitoring/silences", data=raw, content_type="application/json")
    error(resp, 400, "invalid_request")
    assert env.redis.hlen("nanoedit:alerts:silences") == 0


def test_a_bad_stored_silence_is_skipped_not_a_500(env: Env) -> None:
    # Given one good silence and records written by hand: NaN times, wrong types, not JSON
    good = env.client.post("/v1/monitoring/silences", json={**SILENCE, "duration_s": 3600})
    assert good.status_code == 201
    env.redis.hset("nanoedit:alerts:silences", mapping={
        "nan": json.dumps({**json.loads(env.redis.hget("nanoedit:alerts:silences", good.json["id"])),  # type: ignore
                           "id": "nan", "ends_at": float("nan")}),
        "junk": "{not json", "types": json.dumps({"id": "types", "matchers": [], "starts_at": "x"})})
    # When the list is read  Then it answers 200 with the good one only
    resp = env.client.get("/v1/monitoring/silences")
    assert resp.status_code == 200
    assert [s["id"] for s in resp.json["silences"]] == [good.json["id"]]  # type: ignore[index]
    # And reading a bad one by id is a 404, not a 500
    error(env.client.get("/v1/monitoring/silences/nan"), 404, "not_found")


# --- request hygiene ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sent", "echoed"), [("abc-123_x.y:z", True), ("a" * 64, True), ("a" * 65, False),
                                              ("", False), ("has space", False), ("tab\there", False),
                                              ("é", False), ("<script>", False)])
def test_request_id_is_echoed_only_when_safe(env: Env, sent: str, echoed: bool) -> None:
    resp = env.client.get("/healthz", headers={"X-Request-ID": sent})
    got = resp.headers["X-Request-ID"]
    assert (got == sent) is echoed
    assert 1 <= len(got) <= 64 and got.replace("-", "").replace("_", "").replace(".", "").replace(":", "").isalnum()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "", "localhost.evil"])
def test_foreign_host_is_421(env: Env, host: str) -> None:
    error(env.client.get("/v1/jobs", headers={"Host": host}), 421, "misdirected_request")


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "[::1]:8000", "LOCALHOST:1"])
def test_loopback_hosts_are_answered(env: Env, host: str) -> None:
    assert env.client.get("/v1/jobs", headers={"Host": host}).status_code == 200


def test_probes_answer_any_host_and_the_public_name_is_allowed() -> None:
    env = Env(public_base_url="https://edit.example.com")
    assert env.client.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200
    assert env.client.get("/v1/jobs", headers={"Host": "edit.example.com"}).status_code == 200
    error(env.client.get("/v1/jobs", headers={"Host": "10.0.0.7:8000"}), 421, "misdirected_request")


def test_allowed_hosts_setting_and_wildcard() -> None:
    env = Env(allowed_hosts=("api.internal",))
    assert env.client.get("/v1/jobs", headers={"Host": "api.internal:8000"}).status_code == 200
    error(env.client.get("/v1/jobs", headers={"Host": "localhost"}), 421, "misdirected_request")
    assert Env(allowed_hosts=("*",)).client.get("/v1/jobs", headers={"Host": "x.y"}).status_code == 200
    assert Env(host="0.0.0.0", api_keys=("k-123456789",)).client.get(
        "/healthz", headers={"Host": "anything"}).status_code == 200


def test_cross_site_writes_are_refused_when_auth_is_off(env: Env) -> None:
    foreign = {"Origin": "https://evil.example", "Host": "127.0.0.1:8000"}
    body = error(env.client.post("/v1/jobs", data=form(), headers=foreign), 403, "forbidden")
    assert "NANOEDIT_API_KEYS" in body["suggestion"]
    error(env.client.delete(f"/v1/jobs/{'a' * 32}", headers={**foreign, "Origin": "null"}), 403, "forbidden")
    assert env.nothing_stored()
    # Same origin (the service's own pages), no Origin (curl), and reads from anywhere are fine
    same = {"Origin": "http://127.0.0.1:8000", "Host": "127.0.0.1:8000"}
    assert env.client.post("/v1/jobs", data=form(), headers=same).status_code == 202
    assert env.client.post("/v1/jobs", data=form(), headers={"Host": "127.0.0.1:8000"}).status_code == 202
    assert env.client.get("/v1/jobs", headers=foreign).status_code == 200


def test_cross_site_writes_pass_to_auth_when_auth_is_on() -> None:
    env = Env(api_keys=("k-123456789",))
    resp = env.client.post("/v1/jobs", data=form(), headers={"Origin": "https://evil.example",
                                                             "X-API-Key": "k-123456789"})
    assert resp.status_code == 202


@pytest.mark.parametrize("day", ["2024-13-45", "0000-00-00", "2023-02-29"])
def test_report_day_that_is_no_date_is_400(env: Env, day: str) -> None:
    resp = env.client.get("/v1/monitoring/report", query_string={"period": "daily", "day": day})
    error(resp, 400, "invalid_request")
