"""End to end: edit a previous result without re-uploading it (api/references.py). Job A edits an image, B edits
A's output 0 by reference (JSON), C edits B's output by reference (multipart from_job): C succeeds and GET C shows
its parents and the lineage C ← B ← A."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.test_pipeline import submit, wait_done
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
NO_CACHE = {"Cache-Control": "no-cache"}


def test_a_chain_of_edits_by_reference_succeeds_and_shows_its_lineage(stack: Stack) -> None:
    # Given job A, an ordinary edit of an uploaded photo
    a = wait_done(stack, submit(stack, ["chelsea.png"], "make it black and white")["id"])
    assert a["status"] == "succeeded", a
    # When B edits A's output 0 by reference (JSON) and C edits B's output (multipart from_job)
    resp = requests.post(f"{stack.url}/v1/jobs", headers=NO_CACHE, timeout=30, json={
        "instruction": "rotate 90 degrees", "images": [{"job_id": a["id"], "output": 0}]})
    assert resp.status_code == 202, resp.text
    b = wait_done(stack, resp.json()["id"])
    assert b["status"] == "succeeded", b
    resp = requests.post(f"{stack.url}/v1/jobs", headers=NO_CACHE, timeout=30,
                         files=[("from_job", (None, b["id"]))], data={"instruction": "sharpen"})
    assert resp.status_code == 202, resp.text
    c = wait_done(stack, resp.json()["id"])
    # Then C succeeded and shows where its input came from, back to A
    assert c["status"] == "succeeded", c
    assert [(p["job_id"], p["output"]) for p in c["parents"]] == [(b["id"], 0)]
    assert [(e["job_id"], e["available"]) for e in c["lineage"]] == [(b["id"], True), (a["id"], True)]
    assert a["parents"] == [] and requests.get(f"{stack.url}/v1/jobs/{a['id']}", timeout=10).json()["lineage"] == []
    # and a reference to an output that does not exist is refused before anything is stored
    bad = requests.post(f"{stack.url}/v1/jobs", timeout=30, json={
        "instruction": "x", "images": [{"job_id": a["id"], "output": 3}]})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_reference", bad.text
