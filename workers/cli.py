"""`nanoedit`: the command-line client (submit, status, cancel, list) and the fake Gemini server launcher.

A client of the HTTP API through `shared.client`, never of Redis or the worker runtime. It lives in the top
layer (`workers`) because `nanoedit fake-gemini` launches `workers.fake_gemini`; nothing imports this module but
the `nanoedit` entry point and tests. Reading NANOEDIT_URL / NANOEDIT_PORT / NANOEDIT_API_KEY here is fine: these
are the client's defaults, not the service's settings.
Exit codes: 0 success (a job not finished yet counts), 1 the job failed, was canceled or partially succeeded,
2 usage or API errors (including `--wait` timing out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from shared.client import ApiError, NanoeditClient
from shared.jobs.model import JobStatus
from workers import cli_pools

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_ERROR = 2
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_BAD_ENDINGS = frozenset({JobStatus.FAILED, JobStatus.CANCELED, JobStatus.PARTIALLY_SUCCEEDED})
_COMMANDS = ("submit", "models", "usage", "status", "cancel", "list", "report", "limits", "circuit", "alerts",
             "silence", "fake-gemini", "hash-key", *cli_pools.COMMANDS)
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_GLOBAL_WITH_VALUE = ("--url", "--api-key", "--admin-token", "--operator")


def _default_url() -> str:
    return os.environ.get("NANOEDIT_URL", "").strip() or \
        f"http://127.0.0.1:{os.environ.get('NANOEDIT_PORT', '').strip() or '8000'}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nanoedit", description="Client of the nanoedit image-edit API.")
    p.add_argument("--url", default=_default_url(),
                   help="API base URL (default: $NANOEDIT_URL or http://127.0.0.1:$NANOEDIT_PORT, port 8000)")
    p.add_argument("--api-key", default=os.environ.get("NANOEDIT_API_KEY") or None,
                   help="API key (default: $NANOEDIT_API_KEY)")
    p.add_argument("--admin-token", default=os.environ.get("NANOEDIT_ADMIN_TOKEN") or None,
                   help="operator token for `limits`, `circuit`, `alerts` and `silence` "
                        "(default: $NANOEDIT_ADMIN_TOKEN)")
    p.add_argument("--operator", default=os.environ.get("NANOEDIT_OPERATOR") or os.environ.get("USER") or None,
                   help="who acts, sent as X-Operator and shown in the audit log of operator actions "
                        "(default: $NANOEDIT_OPERATOR, else $USER)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("submit", help="submit a job")
    s.add_argument("images", nargs="*", type=Path, metavar="IMAGE")
    s.add_argument("-i", "--instruction", required=True, help="the edit to make")
    s.add_argument("--operation", choices=["edit", "compose", "style_transfer"], default="edit")
    s.add_argument("--num-images", type=int, default=1, metavar="N", help="outputs to generate (1..4)")
    s.add_argument("--description", default=None, help="optional description of the input image(s)")
    s.add_argument("--from-job", action="append", default=[], metavar="ID[:N]", dest="from_jobs",
                   help="use output N (default 0) of an earlier job of yours as an input; repeatable, after IMAGEs")
    # Per-job options, checked by the API against the model catalogue (`nanoedit models` lists what each accepts).
    s.add_argument("--model", default=None, help="a catalogue model id (default: the service's default model)")
    s.add_argument("--aspect-ratio", default=None, metavar="W:H", help="output shape, e.g. 16:9")
    s.add_argument("--image-size", default=None, metavar="SIZE", help="1K, 2K or 4K (per model)")
    s.add_argument("--thinking-level", default=None, metavar="LEVEL", help="e.g. minimal, low, high (per model)")
    s.add_argument("--output-format", choices=["png", "jpeg", "webp"], default=None,
                   help="convert outputs in the worker (default: the provider's bytes untouched)")
    s.add_argument("--quality", type=int, default=None, metavar="Q", help="1..100, with --output-format jpeg/webp")
    s.add_argument("--wait", action="store_true", help="poll until the job finishes and download the outputs")
    s.add_argument("-o", "--output-dir", type=Path, default=Path("."), metavar="DIR",
                   help="where --wait saves outputs (default: current directory)")
    s.add_argument("--timeout", type=float, default=300.0, metavar="S", help="--wait gives up after S seconds")

    sub.add_parser("models", help="the model catalogue: ids, sizes, aspect ratios, thinking levels, lifecycle")
    us = sub.add_parser("usage", help="your tokens and estimated cost (operators: per key)")
    us.add_argument("--period", choices=["day", "month"], default="day")

    st = sub.add_parser("status", help="show a job")
    st.add_argument("job_id", metavar="ID")
    c = sub.add_parser("cancel", help="cancel a job")
    c.add_argument("job_id", metavar="ID")
    ls = sub.add_parser("list", help="list your jobs, newest first")
    ls.add_argument("--status", default=None)
    ls.add_argument("--limit", type=int, default=20, metavar="N")
    lim = sub.add_parser("limits", help="show or change the fleet-wide provider limits (operators)")
    for name, kind in (("concurrency", int), ("rpm", int), ("images-per-min", int), ("lease-s", float)):
        lim.add_argument(f"--{name}", type=kind, default=None, metavar="N")
    lim.add_argument("--reset", action="store_true", help="drop all run-time overrides (env defaults apply)")
    cir = sub.add_parser("circuit", help="show the provider circuit breaker, or force it (operators)")
    cir.add_argument("--force", choices=["open", "closed"], default=None)
    rp = sub.add_parser("report", help="the beat health report: latest, --daily [DAY], --history, "
                                       "--weekly [WEEK] or --monthly [MONTH] (operators)")
    rp.add_argument("--daily", nargs="?", const="", default=None, metavar="DAY",
                    help="daily summary (UTC YYYY-MM-DD; default today so far)")
    rp.add_argument("--history", action="store_true", help="the reports of the last hour")
    rp.add_argument("--weekly", nargs="?", const="", default=None, metavar="WEEK",
                    help="weekly review (ISO week YYYY-Www; default this week so far)")
    rp.add_argument("--monthly", nargs="?", const="", default=None, metavar="MONTH",
                    help="monthly review (YYYY-MM; default this month so far)")
    al = sub.add_parser("alerts", help="firing alerts, their history, ack one, or test the channels (operators)")
    al.add_argument("--history", action="store_true", help="the event history instead of what fires now")
    al.add_argument("--all", action="store_true", help="pending and resolved alerts too")
    al.add_argument("--ack", default=None, metavar="ID", help="acknowledge a firing alert (stops its repeats)")
    al.add_argument("--comment", default="", help="with --ack or on a silence: why")
    al.add_argument("--test", action="store_true", help="send a test notification to every channel")
    si = sub.add_parser("silence", help="mute alerts for a while: silence add|list|delete (operators)")
    si_sub = si.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    add = si_sub.add_parser("add", help="add a silence (at least one matcher; shell patterns like job_*)")
    for matcher in ("alert", "rule", "group", "severity", "queue"):
        add.add_argument(f"--{matcher}", default=None, metavar="PATTERN")
    add.add_argument("--duration", required=True, metavar="D", help="e.g. 30m, 2h, 1d or seconds")
    add.add_argument("--comment", required=True, help="why (shown to the next on-call)")
    si_sub.add_parser("list", help="list silences")
    rm = si_sub.add_parser("delete", help="delete a silence")
    rm.add_argument("silence_id", metavar="ID")
    hk = sub.add_parser("hash-key", help="print the key_hash of an API key for NANOEDIT_API_KEYS_FILE (operators; "
                                         "uses NANOEDIT_KEY_HASH_SECRET or the data dir's secret)")
    hk.add_argument("key", nargs="?", help="the key (default: read one line from stdin; --new makes one)")
    hk.add_argument("--new", action="store_true", help="generate a new random key and print it with its hash")
    cli_pools.add_parsers(sub)  # workers, scale
    sub.add_parser("fake-gemini", help="run the fake Gemini API server (options: nanoedit fake-gemini -h)",
                   add_help=False)
    return p


def _print_json(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=False))


def _print_error(exc: ApiError) -> None:
    print(f"error: {exc.message} ({exc.code})", file=sys.stderr)
    if exc.suggestion:
        print(f"suggestion: {exc.suggestion}", file=sys.stderr)
    if exc.details:
        print(f"details: {exc.details}", file=sys.stderr)


def _job_exit(job: dict[str, Any]) -> int:
    """0 unless the job ended badly; a job still in progress (or in an unknown status) is not a failure."""
    return EXIT_JOB_FAILED if job.get("status") in _BAD_ENDINGS else EXIT_OK


def _submit(client: NanoeditClient, args: argparse.Namespace) -> int:
    if not args.images and not args.from_jobs:
        print("error: give at least one IMAGE or --from-job ID", file=sys.stderr)
        return EXIT_ERROR
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_ERROR
    options: dict[str, str | int] = {
        name: value for name, value in (
            ("model", args.model), ("aspect_ratio", args.aspect_ratio), ("image_size", args.image_size),
            ("thinking_level", args.thinking_level), ("output_format", args.output_format),
            ("quality", args.quality))
        if value is not None}
    job = client.submit(list(args.images), args.instruction, operation=args.operation,
                        num_images=args.num_images, image_description=args.description, options=options,
                        from_jobs=args.from_jobs)
    if not args.wait:
        _print_json(job)
        return EXIT_OK
    job = client.wait(job["id"], timeout_s=args.timeout)
    _print_json(job)
    out_dir: Path = args.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for output in job.get("outputs", []):
        n = int(output["index"])
        ext = _EXTENSIONS.get(str(output.get("mime_type")), "bin")
        path = out_dir / f"{job['id']}-{n}.{ext}"
        path.write_bytes(client.download(job["id"], n))
        print(path)
    for failed in job.get("output_errors", []):
        print(f"output {failed.get('index')}: {failed.get('message')} ({failed.get('code')})", file=sys.stderr)
    if job.get("error"):
        err = job["error"]
        print(f"job {job['status']}: {err.get('message')} ({err.get('code')})", file=sys.stderr)
        if err.get("suggestion"):
            print(f"suggestion: {err['suggestion']}", file=sys.stderr)
    return _job_exit(job)


def _duration_s(text: str) -> float:
    raw = text.strip().lower()
    unit = _DURATION.get(raw[-1:], 0)
    try:
        value = float(raw[:-1] if unit else raw) * (unit or 1)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ValueError(f"--duration {text!r}: use e.g. 30m, 2h, 1d or a number of seconds")
    return value


def _alerts(client: NanoeditClient, args: argparse.Namespace) -> int:
    if args.test:
        _print_json(client.test_alerts())
    elif args.ack:
        _print_json(client.ack_alert(args.ack, comment=args.comment))
    else:
        _print_json(client.alerts("history" if args.history else "all" if args.all else "firing"))
    return EXIT_OK


def _silence(client: NanoeditClient, args: argparse.Namespace) -> int:
    if args.silence_command == "list":
        _print_json(client.silences())
    elif args.silence_command == "delete":
        _print_json(client.delete_silence(args.silence_id))
    else:
        matchers = {k: getattr(args, k) for k in ("alert", "rule", "group", "severity", "queue")
                    if getattr(args, k)}
        try:
            duration = _duration_s(args.duration)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        _print_json(client.add_silence(matchers, duration, args.comment,
                                       created_by=os.environ.get("USER") or None))
    return EXIT_OK


def _fake_gemini(argv: list[str]) -> int:
    from workers.fake_gemini.cli import main as fake_main  # lazy: only this command needs the fake server

    try:
        return int(fake_main(argv) or 0)
    except SystemExit as exc:  # its argparse: -h exits 0, usage errors 2
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR


def _hash_key(args: argparse.Namespace) -> int:
    """Hash a key with this deployment's secret: the line to paste into the keys file (the key itself never is)."""
    import secrets

    from shared.apikeys import hash_key, key_hash_secret
    from shared.settings import Settings

    key = secrets.token_urlsafe(32) if args.new else (args.key or sys.stdin.readline().strip())
    if not key:
        print("error: give a key, pipe one on stdin, or use --new", file=sys.stderr)
        return EXIT_ERROR
    digest = hash_key(key_hash_secret(Settings.from_env()), key)
    if args.new:
        print(f"key: {key}")
    print(f'key_hash = "{digest}"')
    return EXIT_OK


def _command_index(argv: list[str]) -> int | None:
    """Where the command word is (skipping global options and their values), or None."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _COMMANDS:
            return i
        i += 2 if arg in _GLOBAL_WITH_VALUE else 1
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    at = _command_index(argv)
    if at is not None and argv[at] == "fake-gemini":
        # fake-gemini owns its options (including -h): everything after the command word goes over untouched.
        return _fake_gemini(argv[at + 1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 on --help
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    if args.command == "hash-key":
        return _hash_key(args)
    client = NanoeditClient(args.url, api_key=args.api_key, admin_token=args.admin_token, operator=args.operator)
    try:
        if args.command == "submit":
            return _submit(client, args)
        if args.command == "status":
            job = client.get(args.job_id)
            _print_json(job)
            return _job_exit(job)
        if args.command == "models":
            _print_json(client.models())
            return EXIT_OK
        if args.command == "usage":
            _print_json(client.usage(args.period))
            return EXIT_OK
        if args.command == "cancel":
            _print_json(client.cancel(args.job_id))
            return EXIT_OK
        if args.command == "list":
            _print_json(client.list(status=args.status, limit=args.limit))
            return EXIT_OK
        if args.command == "limits":
            changes = {k: v for k, v in (("concurrency", args.concurrency), ("rpm", args.rpm),
                                         ("images_per_min", args.images_per_min), ("lease_s", args.lease_s))
                       if v is not None}
            if args.reset:
                client.reset_limits()
            _print_json(client.set_limits(**changes) if changes else client.limits())
            return EXIT_OK
        if args.command == "circuit":
            _print_json(client.force_circuit(args.force) if args.force else client.circuit())
            return EXIT_OK
        if args.command == "alerts":
            return _alerts(client, args)
        if args.command == "report":
            if args.daily is not None:
                _print_json(client.report("daily", day=args.daily or None))
            elif args.weekly is not None or args.monthly is not None:
                kind, pid = ("weekly", args.weekly) if args.weekly is not None else ("monthly", args.monthly)
                _print_json(client.report(kind, period_id=pid or None))
            else:
                _print_json(client.report("history" if args.history else "latest"))
            return EXIT_OK
        if args.command == "silence":
            return _silence(client, args)
        if args.command in cli_pools.COMMANDS:
            return cli_pools.run(client, args)
        return EXIT_ERROR  # unreachable: argparse rejects unknown commands
    except ApiError as exc:
        _print_error(exc)
        return EXIT_ERROR
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        client.close()
