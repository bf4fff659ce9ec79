"""The HTTP client and the `nanoedit` CLI against the real Flask app served over a real socket.

The app is backed by fakeredis + an in-memory blob store; a stub enqueuer stands in for Celery. Jobs are moved
along by writing through the app's own JobStore, as a worker would.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import fakeredis
import pytest
import requests
from werkzeug.serving import make_server

from api import create_app
from api.services import Services
from shared.blobs import MemoryBlobStore, output_key
from shared.client import ApiError, NanoeditClient
from shared.jobs.model import OutputResult
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings
from tests.support.clocks import HookedClock
from workers.cli import main

PHOTO = Path(__file__).resolve().parents[1] / "fixtures" / "chelsea.png"
UNKNOWN_ID = "0" * 32


class StubEnqueuer(RecordingEnqueuer):
    """Records enqueued jobs; with `complete` set, finishes each job at once (like an instant worker)."""

    def __init__(self) -> None:
        super().__init__()
        self.svc: Services | None = None
        self.complete = False

    def preprocess(self, job_id: str, owner: str) -> None:
        super().preprocess(job_id, owner)
        if self.complete and self.svc is not None:
            succeed(self.svc, job_id)


def succeed(svc: Services, job_id: str) -> None:
    """What the workers do for a one-output job that worked: store the image, record it, finish."""
    data = PHOTO.read_bytes()
    svc.blobs.put(output_key(job_id, 0), data)
    assert svc.store.transition(job_id, "running", {"started_at": svc.clock.now()}).ok
    svc.store.record_output(job_id, 0, OutputResult.succeeded(mime_type="image/png", width=451, height=300,
                                                              size=len(data), sha256=hashlib.sha256(data).hexdigest()))
    assert svc.store.finish(job_id, "succeeded").ok


@dataclass
class Server:
    url: str
    svc: Services
    enqueuer: StubEnqueuer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    enqueuer = StubEnqueuer()
    app = create_app(Settings(data_dir=tmp_path), redis_conn=fakeredis.FakeRedis(decode_responses=True),
                     blobs=MemoryBlobStore(), enqueuer=enqueuer)
    svc: Services = app.extensions["nanoedit"]
    enqueuer.svc = svc
    httpd = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_port}", svc, enqueuer)
    finally:
        httpd.shutdown()
        thread.join(5)


@pytest.fixture
def client(server: Server) -> Iterator[NanoeditClient]:
    with NanoeditClient(server.url, timeout_s=10) as c:
        yield c


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- client -------------------------------------------------------------------------------------------------
def test_submit_a_photo_returns_the_queued_job(client: NanoeditClient, server: Server) -> None:
    job = client.submit([PHOTO], "make it grayscale", num_images=2, image_description="a cat")

    assert job["status"] == "queued" and job["num_images"] == 2
    assert server.enqueuer.preprocessed == [job["id"]]
    assert client.get(job["id"])["id"] == job["id"]


def test_submit_json_with_raw_bytes(client: NanoeditClient) -> None:
    job = client.submit_json([PHOTO.read_bytes()], "make it grayscale", mime_type="image/png")

    assert job["status"] == "queued" and job["operation"] == "edit"


def test_cancel_a_queued_job_cancels_it_at_once_and_a_second_cancel_conflicts(client: NanoeditClient) -> None:
    job = client.submit([PHOTO], "grayscale")

    canceled = client.cancel(job["id"])
    with pytest.raises(ApiError) as again:
        client.cancel(job["id"])

    assert canceled["status"] == "canceled"
    assert again.value.status == 409 and again.value.code == "conflict"


def test_list_is_newest_first_and_filters_by_status(client: NanoeditClient) -> None:
    first = client.submit([PHOTO], "one")
    second = client.submit([PHOTO], "two")
    client.cancel(first["id"])

    everything = client.list()
    canceled = client.list(status="canceled")

    assert [j["id"] for j in everything["jobs"]] == [second["id"], first["id"]]
    assert [j["id"] for j in canceled["jobs"]] == [first["id"]]
    assert everything["next_cursor"] is None


def test_blank_instruction_raises_with_the_error_body(client: NanoeditClient) -> None:
    with pytest.raises(ApiError) as caught:
        client.submit([PHOTO], "   ")

    err = caught.value
    assert err.status == 400 and err.code == "missing_instruction"
    assert err.suggestion and err.body["status_code"] == 400


def test_unknown_job_is_not_found(client: NanoeditClient) -> None:
    with pytest.raises(ApiError) as caught:
        client.get(UNKNOWN_ID)

    assert caught.value.status == 404 and caught.value.code == "not_found"


def test_unreachable_server_raises_unreachable_with_a_hint() -> None:
    with NanoeditClient(closed_port_url(), timeout_s=2) as c, pytest.raises(ApiError) as caught:
        c.health()

    assert caught.value.code == "unreachable" and "make up" in caught.value.suggestion


def test_a_non_json_error_gets_a_sensible_body(client: NanoeditClient, monkeypatch: pytest.MonkeyPatch) -> None:
    html = requests.Response()
    html.status_code, html.reason, html._content = 502, "Bad Gateway", b"<html>bad gateway</html>"
    monkeypatch.setattr(client.session, "request", lambda *a, **k: html)

    with pytest.raises(ApiError) as caught:
        client.get(UNKNOWN_ID)

    assert caught.value.status == 502 and caught.value.code == "internal_error"
    assert caught.value.body["status_code"] == 502 and "bad gateway" in caught.value.details


def test_wait_polls_through_unknown_statuses_until_terminal_then_download(
        client: NanoeditClient, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = client.submit([PHOTO], "grayscale")["id"]
    sleeps: list[float] = []
    real_get = client.get

    def get_from_a_newer_server(job_id: str) -> dict[str, Any]:  # answers a status this client does not know
        job = real_get(job_id)
        return {**job, "status": "some_future_status"} if len(sleeps) == 1 else job

    def sleep(seconds: float) -> None:  # the "worker" advances the job while the client sleeps
        sleeps.append(seconds)
        if len(sleeps) == 2:
            succeed(server.svc, job_id)

    monkeypatch.setattr(client, "get", get_from_a_newer_server)
    done = client.wait(job_id, timeout_s=30, poll_s=0.25, clock=HookedClock(sleep))

    assert done["status"] == "succeeded" and sleeps == [0.25, 0.25]
    assert client.download(job_id, 0) == PHOTO.read_bytes()


def test_wait_honours_retry_after_on_503(client: NanoeditClient, monkeypatch: pytest.MonkeyPatch) -> None:
    busy = ApiError(503, {"error": "busy", "code": "service_unavailable", "details": "", "suggestion": "",
                          "status_code": 503}, retry_after_s=7)
    answers: list[Any] = [busy, {"status": "running"}, {"status": "failed"}]

    def fake_get(job_id: str) -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return cast(dict[str, Any], answer)

    monkeypatch.setattr(client, "get", fake_get)
    sleeps: list[float] = []

    done = client.wait(UNKNOWN_ID, poll_s=0.5, clock=HookedClock(sleeps.append))

    assert done["status"] == "failed" and sleeps == [7, 0.5]


def test_wait_gives_up_at_its_timeout(client: NanoeditClient) -> None:
    job_id = client.submit([PHOTO], "grayscale")["id"]
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(ApiError) as caught:
        client.wait(job_id, timeout_s=2, poll_s=0.5, clock=HookedClock(sleep, start=0.0))

    assert caught.value.code == "wait_timeout" and job_id in caught.value.suggestion
    assert now[0] == pytest.approx(2.0)


def test_health_and_not_ready(client: NanoeditClient) -> None:
    assert client.health() == {"status": "ok"}
    with pytest.raises(ApiError) as caught:
        client.ready(detailed=True)  # no live workers or beat behind fakeredis

    assert caught.value.status == 503 and caught.value.retry_after_s == 5
    assert caught.value.body["status"] == "not_ready"


# -- CLI ----------------------------------------------------------------------------------------------------
def test_cli_submit_prints_the_job(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--url", server.url, "submit", str(PHOTO), "-i", "grayscale"])

    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["id"]) == 32 and out["status"] == "queued"


def test_cli_submit_wait_downloads_every_output(server: Server, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    server.enqueuer.complete = True

    code = main(["--url", server.url, "submit", str(PHOTO), "-i", "grayscale", "--wait", "-o", str(tmp_path)])

    out = capsys.readouterr().out
    job_id = server.enqueuer.preprocessed[0]
    saved = tmp_path / f"{job_id}-0.png"
    assert code == 0 and saved.read_bytes() == PHOTO.read_bytes()
    assert out.rstrip().splitlines()[-1] == str(saved)


def test_cli_status_of_unknown_job_exits_2_with_the_suggestion(server: Server,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--url", server.url, "status", UNKNOWN_ID])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: Not found. (not_found)\nsuggestion: Check the id")


def test_cli_cancel_list_and_status_exit_codes(server: Server, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOEDIT_URL", server.url)  # the default for --url
    main(["submit", str(PHOTO), "-i", "grayscale"])
    job_id = json.loads(capsys.readouterr().out)["id"]

    assert main(["cancel", job_id]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "canceled"
    assert main(["list", "--status", "canceled", "--limit", "5"]) == 0
    assert [j["id"] for j in json.loads(capsys.readouterr().out)["jobs"]] == [job_id]
    assert main(["status", job_id]) == 1  # canceled is a bad ending


def test_cli_usage_errors_and_unreachable_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", str(PHOTO)]) == 2  # no -i
    assert main(["--url", closed_port_url(), "submit", str(tmp_path / "missing.png"), "-i", "x"]) == 2
    assert main(["--url", closed_port_url(), "status", UNKNOWN_ID]) == 2

    err = capsys.readouterr().err
    assert "(unreachable)" in err and "suggestion: Start the service with `make up`" in err


def test_cli_fake_gemini_passes_its_arguments_through(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "http://unused", "fake-gemini", "-h"]) == 0
    assert "--scenario" in capsys.readouterr().out


def test_cli_limits_and_circuit_for_operators(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", server.url, "limits", "--rpm", "90", "--concurrency", "4"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["rpm"] == 90 and shown["config"]["concurrency"] == 4
    assert main(["--url", server.url, "limits", "--reset"]) == 0
    assert json.loads(capsys.readouterr().out)["overrides"] == {}
    assert main(["--url", server.url, "circuit", "--force", "open"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "open"
    assert main(["--url", server.url, "limits", "--concurrency", "0"]) == 2
    assert "suggestion" in capsys.readouterr().err


def test_cli_names_the_operator_in_the_audit_log(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an operator who names themselves (a non-ASCII name is sent with "?" for those characters)
    # When they force the circuit open and then closed through the CLI
    assert main(["--url", server.url, "--operator", "alice", "circuit", "--force", "open"]) == 0
    assert main(["--url", server.url, "--operator", "zoë", "circuit", "--force", "closed"]) == 0
    capsys.readouterr()
    # Then the audit log says who did each
    rows = requests.get(f"{server.url}/v1/monitoring/audit", timeout=10).json()["entries"]
    by = [r["actor"] for r in rows if r["action"].startswith("circuit")]
    assert by[:2] == ["zo?", "alice"]


def test_cli_alerts_and_silences_for_operators(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", server.url, "alerts"]) == 0
    assert json.loads(capsys.readouterr().out)["alerts"] == []
    assert main(["--url", server.url, "alerts", "--test"]) == 0
    assert json.loads(capsys.readouterr().out)["delivered"] == ["log"]
    assert main(["--url", server.url, "alerts", "--history"]) == 0
    assert json.loads(capsys.readouterr().out)["events"][0]["kind"] == "test"
    assert main(["--url", server.url, "silence", "add", "--group", "job_*", "--duration", "2h",
                 "--comment", "provider incident"]) == 0
    silence = json.loads(capsys.readouterr().out)
    assert silence["state"] == "active" and silence["matchers"] == {"group": "job_*"}
    assert main(["--url", server.url, "silence", "list"]) == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)["silences"]] == [silence["id"]]
    assert main(["--url", server.url, "silence", "delete", silence["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] is True
    assert main(["--url", server.url, "silence", "add", "--duration", "1h", "--comment", "x"]) == 2
    assert "matcher" in capsys.readouterr().err
    assert main(["--url", server.url, "silence", "add", "--rule", "x", "--duration", "soon", "--comment", "x"]) == 2
    assert main(["--url", server.url, "alerts", "--ack", "nope"]) == 2


def test_cli_report_before_and_after_beat_wrote_one(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", server.url, "report"]) == 2
    assert "beat" in capsys.readouterr().err  # the 404's suggestion: is beat running?
    server.svc.redis.set("nanoedit:report:latest", json.dumps({"generated_at": "now", "windows": {}}))
    assert main(["--url", server.url, "report"]) == 0
    assert json.loads(capsys.readouterr().out)["generated_at"] == "now"
    assert main(["--url", server.url, "report", "--daily"]) == 0
    assert "jobs_finished" in json.loads(capsys.readouterr().out)


# -- options, references, catalogue and usage (issue: models) -----------------------------------------------
def test_cli_submit_sends_every_option(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--url", server.url, "submit", str(PHOTO), "-i", "grayscale", "--model", "gemini-3-pro-image",
                 "--aspect-ratio", "16:9", "--image-size", "2K", "--thinking-level", "high",
                 "--output-format", "jpeg", "--quality", "80"])

    job = json.loads(capsys.readouterr().out)
    assert code == 0 and job["model"] == "local"  # the local provider stands in for every model
    assert job["options"] == {"aspect_ratio": "16:9", "image_size": "2K", "thinking_level": "high",
                              "output_format": "jpeg", "quality": 80}


def test_cli_submit_with_an_option_the_model_refuses_exits_2_with_the_allowed_values(
        server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--url", server.url, "submit", str(PHOTO), "-i", "grayscale",
                 "--model", "gemini-3.1-flash-lite-image", "--image-size", "4K"])

    err = capsys.readouterr().err
    assert code == 2 and "invalid_option" in err and "1K" in err
    assert server.enqueuer.preprocessed == []


def test_cli_submit_from_an_earlier_job_needs_no_upload(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    server.enqueuer.complete = True
    assert main(["--url", server.url, "submit", str(PHOTO), "-i", "grayscale"]) == 0
    first = json.loads(capsys.readouterr().out)["id"]

    code = main(["--url", server.url, "submit", "-i", "now sepia", "--from-job", f"{first}:0"])

    job = json.loads(capsys.readouterr().out)
    assert code == 0 and [(p["job_id"], p["output"]) for p in job["parents"]] == [(first, 0)]


def test_cli_submit_without_images_or_a_reference_is_a_usage_error(server: Server,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--url", server.url, "submit", "-i", "grayscale"])

    assert code == 2 and "--from-job" in capsys.readouterr().err


def test_cli_models_and_usage(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", server.url, "models"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert main(["--url", server.url, "usage", "--period", "month"]) == 0
    usage = json.loads(capsys.readouterr().out)

    ids = [m["id"] for m in models["models"]]
    assert "gemini-3.1-flash-image" in ids and usage["period"] == "month"
