"""The OpenAPI document: valid 3.1, complete (every served route and method), and true to real responses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import fakeredis
import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from api import create_app
from api.openapi import openapi_document
from shared.blobs import MemoryBlobStore
from shared.errors import all_codes
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings

PHOTO = Path(__file__).resolve().parents[1] / "fixtures" / "chelsea.png"
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def make_app(settings: Settings) -> Flask:
    return create_app(settings, redis_conn=fakeredis.FakeRedis(decode_responses=True), blobs=MemoryBlobStore(),
                      enqueuer=RecordingEnqueuer())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def app(settings: Settings) -> Flask:
    return make_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def schema_validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A validator for components.schemas[name] that resolves the document's own $refs."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule)


@pytest.mark.parametrize("api_keys", [(), ("k1",)], ids=["auth-off", "auth-on"])
def test_document_is_valid_openapi_3_1(tmp_path: Path, api_keys: tuple[str, ...]) -> None:
    doc = openapi_document(Settings(data_dir=tmp_path, api_keys=api_keys))

    validate(doc)  # raises on any structural problem or dangling $ref

    assert doc["openapi"] == "3.1.0"


def test_every_served_route_and_method_is_documented(app: Flask, settings: Settings) -> None:
    doc = openapi_document(settings)
    served: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):  # page assets, not API
            continue
        served.setdefault(openapi_path(rule.rule), set()).update(m.lower() for m in
                                                                   (rule.methods or set()) - IGNORED_METHODS)

    documented = {path: set(ops) - {"parameters"} for path, ops in doc["paths"].items()}

    assert served == documented


def test_path_parameters_match_the_path_templates(settings: Settings) -> None:
    doc = openapi_document(settings)
    resolved = doc["components"]["parameters"]
    for path, ops in doc["paths"].items():
        wanted = set(re.findall(r"{([a-z_]+)}", path))
        for method, op in ops.items():
            params = [resolved[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p for p in op["parameters"]]
            assert {p["name"] for p in params if p["in"] == "path"} == wanted, f"{method} {path}"


def test_error_schema_lists_every_error_code_and_each_route_documents_its_errors(settings: Settings) -> None:
    doc = openapi_document(settings)

    assert doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"] == all_codes()
    post = doc["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"202", "400", "401", "413", "415", "422", "429", "500", "503"} <= set(post)
    assert "Location" in post["202"]["headers"]
    assert "Retry-After" in post["429"]["headers"] and "Retry-After" in post["503"]["headers"]
    job = doc["paths"]["/v1/jobs/{job_id}"]
    assert {"404", "410"} <= set(job["get"]["responses"]) and "409" in job["delete"]["responses"]
    output = doc["paths"]["/v1/jobs/{job_id}/outputs/{n}"]["get"]["responses"]
    assert "ETag" in output["200"]["headers"]
    assert all("X-Request-ID" in r["headers"] for ops in doc["paths"].values() for op in ops.values()
               for r in op["responses"].values())


def test_submission_bodies_idempotency_header_and_limits(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, max_image_bytes=1234567, max_images=5)
    doc = openapi_document(s)
    post = doc["paths"]["/v1/jobs"]["post"]

    content = post["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert "Idempotency-Key" in {p.get("name") for p in post["parameters"]}
    assert "1234567" in post["description"]
    schemas = doc["components"]["schemas"]
    assert schemas["JobSubmissionMultipart"]["properties"]["image"]["maxItems"] == 5
    assert schemas["JobSubmissionJson"]["properties"]["num_images"]["maximum"] == 4


def test_security_is_optional_only_when_auth_is_off(tmp_path: Path) -> None:
    off = openapi_document(Settings(data_dir=tmp_path))
    on = openapi_document(Settings(data_dir=tmp_path, api_keys=("k1",)))

    assert {} in off["security"]
    assert {} not in on["security"]
    assert set(on["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyHeader"}
    assert on["paths"]["/healthz"]["get"]["security"] == []


def test_served_document_is_the_built_one(client: FlaskClient, settings: Settings) -> None:
    resp = client.get("/openapi.json")

    assert resp.status_code == 200
    assert resp.get_json() == openapi_document(settings)


def test_real_responses_match_their_schemas(client: FlaskClient, settings: Settings) -> None:
    doc = openapi_document(settings)

    submitted = client.post("/v1/jobs", data={"instruction": "make it grayscale",
                                              "image": (PHOTO.open("rb"), "chelsea.png")},
                            content_type="multipart/form-data")
    assert submitted.status_code == 202, submitted.get_json()
    schema_validator(doc, "Job").validate(submitted.get_json())
    job_id = submitted.get_json()["id"]
    schema_validator(doc, "Job").validate(client.get(f"/v1/jobs/{job_id}").get_json())
    schema_validator(doc, "Job").validate(client.delete(f"/v1/jobs/{job_id}").get_json())
    schema_validator(doc, "JobList").validate(client.get("/v1/jobs").get_json())
    schema_validator(doc, "ApiIndex").validate(client.get("/v1").get_json())
    schema_validator(doc, "Health").validate(client.get("/healthz").get_json())
    not_ready = client.get("/readyz?detailed=true")  # fakeredis: no live workers, no beat
    assert not_ready.status_code == 503
    schema_validator(doc, "NotReady").validate(not_ready.get_json())
    for bad in (client.get(f"/v1/jobs/{'0' * 32}"), client.post("/v1/jobs", data={"instruction": " "}),
                client.get("/no/such/route"), client.put("/v1/jobs")):
        schema_validator(doc, "Error").validate(bad.get_json())
