"""GET / — the submit page, a human's first contact with the service; GET /dashboard — the operator page
(docs/api.md#routes).

Owns two HTML pages (`templates/index.html`, `templates/dashboard.html`) and their scripts and stylesheets
(`static/submit.*`, `static/dashboard.*`, `static/charts.js`), served by this blueprint because the app is built with
`static_folder=None`. The pages are plain clients of the public API (jobs, /v1, /readyz, and for the dashboard
/v1/monitoring/* and /v1/admin/*): they must not reach into the job store (only the settings shape their CSP),
and they load nothing from other hosts (the service often runs on machines without internet), which the
Content-Security-Policy below enforces. The one thing the dashboard gets from here is the Procfile's worker
lines, for its "add an instance" hints, so the commands it shows are the ones the deployment really runs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Response, render_template

from api.services import services
from shared.blob_config import BlobConfig

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/static")

# Same-origin only; `blob:` for output images fetched with the API key and for previews of the chosen files.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PROCFILE = Path(__file__).resolve().parents[1] / "Procfile"


def _store_origin(blob: BlobConfig) -> str:
    """The origin presigned download URLs point at when NANOEDIT_BLOB_REDIRECTS is on ("" when off): the page
    follows the API's 307 there, so its CSP must allow it (and the bucket's CORS rule must allow the page)."""
    if not (blob.backend == "s3" and blob.redirects):
        return ""
    if blob.endpoint_url:
        parts = urlsplit(blob.endpoint_url)
        return f"{parts.scheme}://{parts.netloc}"
    return "https://*.amazonaws.com"


def _page(template: str, **context: object) -> Response:
    resp = Response(render_template(template, **context), mimetype="text/html")
    origin = _store_origin(services().settings.blob)
    resp.headers["Content-Security-Policy"] = (_CSP.replace("connect-src 'self'", f"connect-src 'self' {origin}")
                                               if origin else _CSP)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


def worker_processes(procfile: str) -> list[dict[str, object]]:
    """The Procfile's Celery worker lines: [{"process", "queues", "command"}], in file order.

    `queues` is the worker's `-Q` list, so the page can tell which process serves a queue (preprocess instances
    also serve maintenance). The command is kept as written (shell expansions included); the page fills in
    the values it knows.
    """
    found: list[dict[str, object]] = []
    for line in procfile.splitlines():
        name, sep, command = line.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", name.strip()):
            continue
        try:
            words = shlex.split(command)
        except ValueError:
            continue
        if "celery" not in words or "worker" not in words or "-Q" not in words[:-1]:
            continue
        queues = words[words.index("-Q") + 1].split(",")
        found.append({"process": name.strip(), "queues": queues, "command": command.strip()})
    return found


@bp.get("/")
def submit_page() -> Response:
    return _page("index.html")


@bp.get("/dashboard")
def dashboard_page() -> Response:
    try:
        workers = worker_processes(PROCFILE.read_text(encoding="utf-8"))
    except OSError:  # deployed without the Procfile: the page shows the hints without commands
        workers = []
    return _page("dashboard.html", workers=workers)
