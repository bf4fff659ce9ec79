"""The bench suite's own machinery (bench/figures.py, bench/suite.py, bench/chart.py, bench/wrk.py): ratio
orientation, what the runner writes and how it treats skipped and failing scenarios, and that wrk's Lua hooks
count non-2xx answers (a bench that measures error responses must say so)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from bench import suite, wrk
from bench.figures import Figure, figure, ratio_of
from tests.support.stack import require_binary


def test_ratio_above_one_means_nanoedit_does_better_in_both_directions() -> None:
    # Given a throughput twice the baseline's and a latency half the baseline's
    # When the ratios are computed
    # Then both read 2×, and a missing baseline or a zero denominator gives no ratio
    assert ratio_of(200.0, 100.0, "higher") == 2.0
    assert ratio_of(5.0, 10.0, "lower") == 2.0
    assert ratio_of(5.0, None, "lower") is None
    assert ratio_of(0.0, 3.0, "lower") is None


class _Fixed:
    def __init__(self, name: str, result: list[Figure] | Exception, skip: str = "") -> None:
        self.name, self.description, self._result, self._skip = name, f"{name} scenario", result, skip
        self.in_quick_run = True
        self.quick_seen: bool | None = None

    def skip_reason(self) -> str:
        return self._skip

    def run(self, quick: bool) -> list[Figure]:
        self.quick_seen = quick
        if isinstance(self._result, Exception):
            raise self._result
        return self._result


def test_runner_writes_json_table_and_chart_and_keeps_going_past_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Given one scenario with figures, one that cannot run here and one that fails
    good = _Fixed("good", [figure("good", "accept @8 conns", "req/s", 300.0, 100.0, "higher", target="≥ 2×"),
                           figure("good", "bytes per job", "B", 1500.0, None, "lower")])
    monkeypatch.setattr(suite, "SCENARIOS", [good, _Fixed("absent", [], skip="no wrk"),
                                             _Fixed("broken", RuntimeError("boom"))])
    # When the suite runs in quick mode
    code = suite.main(["--quick", "--out", str(tmp_path)])
    # Then it exits 1 for the failure, but the good scenario's figures are written, printed and charted
    assert code == 1
    assert good.quick_seen is True
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert [f["name"] for f in doc["figures"]] == ["accept @8 conns", "bytes per job"]
    assert doc["figures"][0]["ratio"] == 3.0
    assert {s["name"]: s["status"] for s in doc["scenarios"]} == {"good": "ok", "absent": "skipped",
                                                                  "broken": "error"}
    assert doc["machine"]["cores"] and doc["machine"]["python"]
    assert "3.00×" in capsys.readouterr().out
    row = "| good | accept @8 conns | 300.0 req/s | 100.0 req/s | 3.00× | ≥ 2× |"
    assert row in (tmp_path / "latest.md").read_text()
    with Image.open(tmp_path / "latest.png") as im:
        assert im.format == "PNG" and im.width > 800
    # And --rerender rebuilds the table and chart from latest.json alone, measuring nothing
    (tmp_path / "latest.md").unlink()
    (tmp_path / "latest.png").unlink()
    assert suite.main(["--rerender", "--out", str(tmp_path)]) == 0
    assert row in (tmp_path / "latest.md").read_text() and (tmp_path / "latest.png").exists()


def test_only_runs_the_named_scenarios_and_refuses_unknown_names(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Given two scenarios, the second too slow for the quick run
    a, b = _Fixed("a", []), _Fixed("b", [])
    b.in_quick_run = False
    monkeypatch.setattr(suite, "SCENARIOS", [a, b])
    # When only "b" is asked for, then only b runs (full mode); an unknown name is a usage error
    assert suite.main(["--only", "b", "--out", str(tmp_path), "--no-chart"]) == 0
    assert (a.quick_seen, b.quick_seen) == (None, False)
    # And the quick run leaves b out unless it is named
    a.quick_seen = b.quick_seen = None
    assert suite.main(["--quick", "--out", str(tmp_path), "--no-chart"]) == 0
    assert (a.quick_seen, b.quick_seen) == (True, None)
    assert suite.main(["--quick", "--only", "b", "--out", str(tmp_path), "--no-chart"]) == 0
    assert b.quick_seen is True
    with pytest.raises(SystemExit):
        suite.main(["--only", "nope", "--out", str(tmp_path)])


EXPECTED_BODY = b"--x\r\n" + bytes(range(256)) * 40 + b"\r\n--x--\r\n"


@pytest.fixture
def half_failing_server() -> Iterator[str]:
    """Answers GET /ok/* with 200, GET /bad/* with 500, POST with 202 for the expected upload (else 400)."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            status = 200 if self.path.startswith("/ok/") else 500
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_POST(self) -> None:  # 202 only for the exact body and headers the script must send
            body = self.rfile.read(int(self.headers["Content-Length"]))
            same = (body == EXPECTED_BODY and self.headers["Content-Type"] == "multipart/form-data; boundary=x"
                    and self.headers["Cache-Control"] == "no-cache")
            self.send_response(202 if same else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.mark.e2e
def test_wrk_counts_2xx_and_non_2xx_answers(half_failing_server: str, tmp_path: Path) -> None:
    require_binary("wrk")
    ids = tmp_path / "ids"
    ids.write_text("1\n2\n3\n")
    # When wrk polls ids under a prefix that answers 200, then one that answers 500
    good = wrk.run(half_failing_server, wrk.get_ids_script(ids, "/ok/"), 2, 1)
    bad = wrk.run(half_failing_server, wrk.get_ids_script(ids, "/bad/"), 2, 1)
    # Then the first is clean and the second is all non-2xx, so it cannot pass for a measurement
    assert good.clean and good.ok > 0 and good.ok == good.requests
    assert not bad.clean and bad.non2xx > 0 and bad.ok == 0


@pytest.mark.e2e
def test_wrk_posts_the_body_file_with_its_headers(half_failing_server: str, tmp_path: Path) -> None:
    require_binary("wrk")
    # Given a binary multipart body in a file
    body = tmp_path / "body.bin"
    body.write_bytes(EXPECTED_BODY)
    # When wrk posts it for a second
    got = wrk.run(half_failing_server, wrk.post_script(body, "multipart/form-data; boundary=x", "/jobs"), 2, 1)
    # Then every request carried the exact bytes and headers (the server answers 400 otherwise)
    assert got.clean and got.ok > 0
