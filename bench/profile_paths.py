"""Profile the hot paths the way issue 11's findings were made: py-spy on the real processes under load.

    python -m bench.profile_paths status   # one gunicorn worker, `wrk -c4` polling GET /v1/jobs/{id} for 10 s
    python -m bench.profile_paths accept   # one gunicorn worker, `wrk -c4` posting a ~240 KB PNG to POST /v1/jobs
    python -m bench.profile_paths burst    # bursts of 32 jobs (local provider, 16 long-polling clients) for 7 s,
                                     # py-spy on the web, preprocess and generate process trees

Each target starts a private redis-server and the processes it needs (tests/support/stack.py), records with
`py-spy record -f raw` (the installed dev dependency; needs ptrace, e.g. root or
`kernel.yama.ptrace_scope=0`), stops everything, and prints the functions of ours and of the libraries on the
path with their share of samples, inclusive (a function and everything it calls). Raw files stay in --out for
flame graphs (`py-spy`'s raw format is what `flamegraph.pl` reads).

A note on reading the burst profile: py-spy counts a native thread blocked in a lock as active, so gevent's
idle thread-pool workers (`acquire_with_timeout`) show up as a large share of the generate process; ignore them.
Shares are of samples, not of wall time: they say where CPU goes, not where a request waits.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.http_bench import multipart
from bench.images import noise_png
from bench.run import run_job
from tests.support.procs import children
from tests.support.stack import RedisServer, Stack, make_stack

PY_SPY = str(Path(sys.executable).with_name("py-spy"))
_FRAME = re.compile(r"(.*) \((.+?):\d+\)$")


def inclusive(raw: Path, top: int = 40) -> list[tuple[float, str]]:
    """(share of samples, "function file") for the `top` functions, each counted once per sample it is on."""
    shares: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            m = _FRAME.match(frame)
            key = f"{m.group(1)} {m.group(2)}" if m else frame
            if key not in seen:
                seen.add(key)
                shares[key] += n
    return [(v / total, k) for k, v in shares.most_common(top)] if total else []


def spy(pid: int, out: Path, seconds: float, *, subprocesses: bool = False) -> subprocess.Popen[bytes]:
    args = [PY_SPY, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-d", str(int(seconds)), "-r", "200"]
    return subprocess.Popen(args + (["--subprocesses"] if subprocesses else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _web(stack: Stack, target: str, tmp: Path) -> list[Path]:
    body, ctype = multipart(noise_png(240_000))
    ids = []
    with requests.Session() as s:
        for _ in range(100):
            r = s.post(f"{stack.url}/v1/jobs", data=body, headers={"Content-Type": ctype, "Cache-Control": "no-cache"},
                       timeout=30)
            r.raise_for_status()
            ids.append(r.json()["id"])
    lua = tmp / "load.lua"
    if target == "status":
        lua.write_text("ids = {" + ",".join(f'"{i}"' for i in ids) + "}\nn = 0\nrequest = function()\n n = n + 1\n"
                       " return wrk.format('GET', '/v1/jobs/' .. ids[(n % #ids) + 1])\nend\n")
    else:
        (tmp / "body.bin").write_bytes(body)
        lua.write_text(f'local f = io.open("{tmp / "body.bin"}", "rb"); wrk.body = f:read("*a"); f:close()\n'
                       f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{ctype}"\n'
                       'wrk.headers["Cache-Control"] = "no-cache"\n')
    worker = children(stack.procs["web"].popen.pid)[0]
    out = tmp / f"{target}.raw"
    recorder = spy(worker, out, 12)
    time.sleep(1)
    load = subprocess.run(["wrk", "-t1", "-c4", "-d10s", "-s", str(lua),
                           stack.url + ("/v1/jobs" if target == "accept" else "/")],
                          capture_output=True, text=True, check=False)
    print(load.stdout, file=sys.stderr)
    _finish(recorder)
    return [out]


def _burst(stack: Stack, tmp: Path) -> list[Path]:
    with requests.Session() as s:
        run_job(stack.url, s)  # warm-up: imports and connections in every process
    outs = {name: tmp / f"burst-{name}.raw" for name in ("web", "preprocess", "generate")}
    recorders = [spy(stack.procs[name].popen.pid, out, 9, subprocesses=True) for name, out in outs.items()]
    time.sleep(1.5)
    started, jobs = time.perf_counter(), 0
    with ThreadPoolExecutor(16) as pool:
        while time.perf_counter() - started < 7:
            list(pool.map(lambda _: run_job(stack.url, requests.Session()), range(32)))
            jobs += 32
    print(f"{jobs / (time.perf_counter() - started):.1f} jobs/s while profiled", file=sys.stderr)
    for r in recorders:
        _finish(r)
    return list(outs.values())


def _finish(recorder: subprocess.Popen[bytes]) -> None:
    _, err = recorder.communicate(timeout=60)
    if recorder.returncode != 0:
        raise RuntimeError(f"py-spy failed (needs ptrace permission): {err.decode(errors='replace')[-500:]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=("status", "accept", "burst"))
    ap.add_argument("--out", type=Path, default=None, help="keep the raw py-spy files here")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args(argv)
    if args.target != "burst" and shutil.which("wrk") is None:
        print("`wrk` is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="nanoedit-profile-"))
    server = RedisServer()
    web_workers = {"NANOEDIT_WEB_WORKERS": "1"} if args.target != "burst" else {}
    stack = make_stack(server.url(0), tmp / "stack", NANOEDIT_KEY_SUBMISSIONS_PER_MIN="0",
                       NANOEDIT_KEY_MAX_WAITING_JOBS="0", **web_workers)
    try:
        if args.target == "burst":
            stack.start_worker("preprocess", 2)
            stack.start_worker("generate", 3)
        stack.start_api()
        stack.wait_api()
        if args.target == "burst":
            stack.wait_live()
        raws = _burst(stack, tmp) if args.target == "burst" else _web(stack, args.target, tmp)
    finally:
        stack.stop()
        server.stop()
    for raw in raws:
        print(f"== {raw.name}: share of samples, inclusive")
        for share, name in inclusive(raw, args.top):
            print(f"{share:6.1%} {name}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for raw in raws:
            shutil.copy(raw, args.out / raw.name)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
