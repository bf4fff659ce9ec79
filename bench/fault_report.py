"""A fire drill: the real service on the gemini provider against the fake under injected faults, with a signed
alert webhook receiver — prints the health report beat wrote and every notification body received.

    python -m bench.fault_report [--seconds 150] [--error-rate 0.3] [--timeout-rate 0.08] [--for-s 20]

The default alert rules are used with `for_s` shortened (--for-s) so the drill fits in a few minutes, and the
report interval is 5 s. NANOEDIT_MAX_RETRIES=0 so injected provider faults become job failures (with retries on,
nearly every job would recover and no job-level alert would fire: that is the point of retries). After the
fault phase the fake is switched to `ok`; the report's 5-minute window keeps the errors, so alerts stay firing.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from standardwebhooks.webhooks import Webhook

from tests.support.stack import RedisServer, make_stack
from workers.fake_gemini.config import FakeGeminiConfig
from workers.fake_gemini.server import FakeGeminiServer

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "chelsea.png"
SECRET = "whsec_" + "ZmlyZS1kcmlsbC1hbGVydC1zZWNyZXQtMzItYnl0ZXMh"
RULES = Path(__file__).resolve().parents[1] / "monitoring" / "alerts" / "default_rules.toml"


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                payload = Webhook(SECRET).verify(body, {k.lower(): v for k, v in self.headers.items()})
                outer.bodies.append(payload)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=150)
    ap.add_argument("--error-rate", type=float, default=0.3)
    ap.add_argument("--timeout-rate", type=float, default=0.08)
    ap.add_argument("--for-s", type=int, default=20)
    ap.add_argument("--jobs-per-s", type=float, default=2.0)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="nanoedit-drill-"))
    rules = tmp / "rules.toml"
    rules.write_text(re.sub(r"^for_s = \d+", f"for_s = {args.for_s}", RULES.read_text(), flags=re.M))
    receiver = Receiver()
    fake = FakeGeminiServer(FakeGeminiConfig(error_rate=args.error_rate, timeout_rate=args.timeout_rate,
                                             hang_s=3.0, latency_ms_mean=300, latency_ms_p99=900, seed=1)).start()
    server = RedisServer()
    stack = make_stack(server.url(0), tmp / "stack", GEMINI_API_KEY="drill", NANOEDIT_PROVIDER="auto",
                       NANOEDIT_GEMINI_BASE_URL=fake.base_url, NANOEDIT_GEMINI_TIMEOUT_S="2",
                       NANOEDIT_MAX_RETRIES="0", NANOEDIT_REPORT_INTERVAL_S="5", NANOEDIT_REPORT_MIN_SAMPLES="20",
                       NANOEDIT_ALERT_RULES=str(rules), NANOEDIT_ALERT_WEBHOOK_URL=receiver.url,
                       NANOEDIT_ALERT_WEBHOOK_SECRET=SECRET, NANOEDIT_CIRCUIT_FAILURES="1000",
                       NANOEDIT_GEMINI_CONCURRENCY="6")
    try:
        stack.start_worker("preprocess", 2)
        stack.start_worker("generate", 6)
        stack.start_beat()
        stack.start_api()
        stack.wait_api()
        stack.wait_live()
        session = requests.Session()
        end = time.monotonic() + args.seconds
        n = 0
        while time.monotonic() < end:
            session.post(f"{stack.url}/v1/jobs", headers={"Cache-Control": "no-cache"}, timeout=30,
                         data={"instruction": f"drill {n}"}, files=[("image", ("a.png", PHOTO.read_bytes()))])
            n += 1
            time.sleep(1 / args.jobs_per_s)
        time.sleep(12)  # let the last jobs finish and beat write a report
        report = session.get(f"{stack.url}/v1/monitoring/report", timeout=10).json()
        alerts = session.get(f"{stack.url}/v1/monitoring/alerts", params={"state": "firing"}, timeout=10).json()
    finally:
        stack.stop()
        server.stop()
        fake.stop()
        receiver.server.shutdown()
    print(f"# fire drill: {n} jobs over {args.seconds:.0f} s, fake error_rate={args.error_rate} "
          f"timeout_rate={args.timeout_rate}, rules = defaults with for_s={args.for_s}")
    print("## latest health report (5m window)")
    print(json.dumps({k: report[k] for k in ("generated_at", "queues", "beat")} |
                     {"5m": report["windows"]["5m"], "circuit": report["circuit"]["state"]}, indent=1))
    print("## firing alerts")
    print(json.dumps(alerts, indent=1)[:4000])
    print(f"## {len(receiver.bodies)} signed webhook notification(s) received (signatures verified)")
    for body in receiver.bodies:
        print(json.dumps(body, indent=1)[:3000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
