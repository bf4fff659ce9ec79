"""GET / — the submit page: a human's first contact with the service (design §4).

Owns one HTML page (`templates/index.html`) and its script and stylesheet (`static/submit.*`), served by this
blueprint because the app is built with `static_folder=None`. The page is a plain client of the public API
(POST /v1/jobs, GET/DELETE /v1/jobs/{id}, GET /v1, /readyz): it must not reach into services or the job store,
and it loads nothing from other hosts (the service often runs on machines without internet), which the
Content-Security-Policy below enforces.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/static")

# Same-origin only; `blob:` for output images fetched with the API key and for previews of the chosen files.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@bp.get("/")
def submit_page() -> Response:
    resp = Response(render_template("index.html"), mimetype="text/html")
    resp.headers["Content-Security-Policy"] = _CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp
