"""Load generation with `wrk` (Debian package `wrk`): a C event loop, so the generator is not the bottleneck the
way a Python client would be on a 2-core machine, with Lua hooks for the multipart body and for round-robin job
ids. Every run counts 2xx and non-2xx answers in the Lua `response` hook and reports them from `done`: a figure
measured on error responses is worthless, so callers refuse one with non-2xx answers or socket errors.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Per-thread counters; `done` (main thread) sums them and prints one JSON line the runner parses.
_COUNTING = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"ok":%d,"non2xx":%d,' ..
    '"socket_errors":%d,"p50_us":%.1f,"p99_us":%.1f}\\n', summary.requests, summary.duration, o, b,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""

_POST = """
ok, bad = 0, 0
local f = assert(io.open(%(body)s, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = %(ctype)s
wrk.headers["Cache-Control"] = "no-cache"
wrk.path = %(path)s
"""

_GET_IDS = """
ok, bad = 0, 0
local ids, n = {}, 0
function init(args)
  ok, bad = 0, 0
  for line in io.lines(%(ids)s) do table.insert(ids, line) end
  n = start or 0  -- set per thread by setup()
end
function request()
  n = n + 1
  return wrk.format("GET", %(prefix)s .. ids[(n %% #ids) + 1])
end
"""

_SETUP_WITH_OFFSET = """
local threads, offset = {}, 0
function setup(thread) table.insert(threads, thread); thread:set("start", offset); offset = offset + 7919 end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    non2xx: int
    socket_errors: int

    @property
    def clean(self) -> bool:
        return self.non2xx == 0 and self.socket_errors == 0 and self.ok > 0


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua(s: str | Path) -> str:
    return json.dumps(str(s))  # a JSON string literal is a valid Lua string literal for paths and ASCII text


def post_script(body_file: Path, content_type: str, path: str) -> str:
    return _POST % {"body": _lua(body_file), "ctype": _lua(content_type), "path": _lua(path)} + _COUNTING


def get_ids_script(ids_file: Path, prefix: str) -> str:
    counting = _COUNTING.replace("local threads = {}\nfunction setup(thread) table.insert(threads, thread) end\n",
                                 _SETUP_WITH_OFFSET)
    return _GET_IDS % {"ids": _lua(ids_file), "prefix": _lua(prefix)} + counting


def run(url: str, script: str, connections: int, duration_s: float, timeout_s: float = 10) -> WrkResult:
    """One wrk run against `url` (scheme://host:port); raises if wrk fails or prints no result."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
        lua = fh.name
    threads = max(1, min(connections, 2))
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s:g}s", "--timeout",
           f"{timeout_s:g}s", "-s", lua, url]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 60, check=False)
    finally:
        Path(lua).unlink(missing_ok=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    d = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(connections=connections, requests=d["requests"], rps=d["requests"] / (d["duration_us"] / 1e6),
                     p50_ms=d["p50_us"] / 1000, p99_ms=d["p99_us"] / 1000, ok=d["ok"], non2xx=d["non2xx"],
                     socket_errors=d["socket_errors"])
