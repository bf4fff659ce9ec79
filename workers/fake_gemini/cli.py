"""Command line for the fake Gemini API: `python -m workers.fake_gemini --port 8089 ...`.

Operators point a deployment at it with `NANOEDIT_GEMINI_BASE_URL=http://127.0.0.1:8089` (any non-empty
`GEMINI_API_KEY` works unless `--api-key` restricts the valid keys) to load-test the queue, limiter, retries
and alerts without spending quota. The first stdout line is `fake-gemini listening on <base url>` so a script
that starts it with `--port 0` can read the port.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from workers.fake_gemini.config import DEFAULT_MODELS, FakeConfigError, FakeGeminiConfig
from workers.fake_gemini.scenarios import scenario_names
from workers.fake_gemini.server import FakeGeminiServer


def _latency(text: str) -> tuple[float, float]:
    """`MEAN` or `MEAN,P99` in milliseconds."""
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MEAN or MEAN,P99 in ms, got {text!r}") from None
    if len(values) not in (1, 2) or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected MEAN or MEAN,P99 in ms, got {text!r}")
    return (values[0], values[-1])


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability 0..1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability 0..1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fake-gemini", description="Serve a fake Gemini image API locally.")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port; 0 picks a free one (default 8089)")
    parser.add_argument("--scenario", default="ok", choices=scenario_names(), help="default scenario")
    parser.add_argument("--latency-ms", type=_latency, default=(0.0, 0.0), metavar="MEAN[,P99]",
                        help="simulated latency, lognormal with this mean and p99 (ms)")
    parser.add_argument("--error-rate", type=_rate, default=0.0, help="share of random 500/503 answers")
    parser.add_argument("--timeout-rate", type=_rate, default=0.0, help="share of requests that hang")
    parser.add_argument("--hang-s", type=float, default=300.0, help="how long a hang lasts (default 300)")
    parser.add_argument("--slow-ms", type=float, default=5000.0, help="latency of the 'slow' scenario")
    parser.add_argument("--rpm", type=int, default=0, help="requests per minute before 429 (0 = unlimited)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated known models ('' = accept any model)")
    parser.add_argument("--api-key", action="append", default=[], dest="api_keys",
                        help="a valid key (repeatable); default: any non-empty key is valid")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed for reproducible runs")
    parser.add_argument("--log-requests", action="store_true", help="log each request to stderr")
    return parser


def config_from_args(args: argparse.Namespace) -> FakeGeminiConfig:
    mean, p99 = args.latency_ms
    return FakeGeminiConfig(
        scenario=args.scenario, latency_ms_mean=mean, latency_ms_p99=p99, error_rate=args.error_rate,
        timeout_rate=args.timeout_rate, hang_s=args.hang_s, slow_ms=args.slow_ms, rpm=args.rpm,
        known_models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        api_keys=tuple(args.api_keys), seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except FakeConfigError as exc:
        parser.error(str(exc))
    server = FakeGeminiServer(config, host=args.host, port=args.port, log_requests=args.log_requests)
    try:
        server.start()
    except OSError as exc:
        print(f"fake-gemini: cannot bind {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1

    def _stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, _stop)
    print(f"fake-gemini listening on {server.base_url}", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
