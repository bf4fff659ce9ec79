"""A small typed HTTP client of the v1 API (docs/api.md), used by the `nanoedit` CLI and by tests.

Owns: request building (multipart or JSON), turning every non-2xx answer and every connection failure into
one `ApiError` carrying the API's error body, and polling a job to a terminal status. It must not import
`api` or `workers`: it talks to the service over HTTP only. Its one in-package user is the CLI (workers/cli.py);
nothing in `shared` or `monitoring` imports it (an import-linter contract in pyproject.toml holds that).
"""

from __future__ import annotations

import base64
import builtins
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from shared.clock import Clock, SystemClock
from shared.jobs.model import TERMINAL

TERMINAL_STATUSES = frozenset(s.value for s in TERMINAL)
_RETRYABLE = (429, 503)
_MAX_RETRY_AFTER_S = 60.0


class ApiError(Exception):
    """A non-2xx answer (or no answer at all). `body` always has the error shape of docs/api.md#errors."""

    def __init__(self, status: int, body: dict[str, Any], *, retry_after_s: float | None = None) -> None:
        self.status = status
        self.body = body
        self.retry_after_s = retry_after_s
        super().__init__(f"{self.message} ({self.code})")

    @property
    def code(self) -> str:
        return str(self.body.get("code") or "unknown_error")

    @property
    def message(self) -> str:
        return str(self.body.get("error") or f"HTTP {self.status}")

    @property
    def details(self) -> str:
        return str(self.body.get("details") or "")

    @property
    def suggestion(self) -> str:
        return str(self.body.get("suggestion") or "")


def _fallback_body(resp: requests.Response) -> dict[str, Any]:
    """An error body for an answer that is not ours (a proxy's HTML page, an empty 502...)."""
    status = resp.status_code
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 410: "gone",
            413: "payload_too_large", 415: "unsupported_media_type", 429: "rate_limited",
            503: "service_unavailable"}.get(status, "invalid_request" if status < 500 else "internal_error")
    text = resp.text.strip().replace("\n", " ")[:200]
    return {"error": f"HTTP {status} {resp.reason or ''}".strip(), "code": code,
            "details": text or "the response had no JSON error body",
            "suggestion": "Check --url points at the nanoedit API; retry later if the service is restarting.",
            "status_code": status}


def _retry_after(resp: requests.Response) -> float | None:
    raw = resp.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None  # an HTTP-date: rare enough to fall back to the poll interval


class NanoeditClient:
    """`NanoeditClient("http://127.0.0.1:8000", api_key=...)`; every method returns parsed JSON or raises."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 30,
                 admin_token: str | None = None, operator: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        if admin_token:
            self.session.headers["X-Admin-Token"] = admin_token
        if operator:  # who acts, for the audit log of operator actions (GET /v1/monitoring/audit)
            # A header value must be latin-1: a login name outside ASCII is sent with "?" for those characters.
            self.session.headers["X-Operator"] = "".join(
                c if c.isascii() and c.isprintable() else "?" for c in operator)[:64]

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> NanoeditClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base_url}{path}"
        try:
            resp = self.session.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise ApiError(0, {
                "error": f"Could not reach the nanoedit API at {self.base_url}.", "code": "unreachable",
                "details": type(exc).__name__,
                "suggestion": "Start the service with `make up` (or check --url / NANOEDIT_URL).",
                "status_code": 0}) from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            if not isinstance(body, dict) or "code" not in body:
                body = _fallback_body(resp)
            raise ApiError(resp.status_code, body, retry_after_s=_retry_after(resp))
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = self._send(method, path, **kwargs)
        try:
            body = resp.json()
        except ValueError:
            raise ApiError(resp.status_code, {**_fallback_body(resp), "code": "invalid_response",
                                              "error": "The server's answer was not JSON."}) from None
        if not isinstance(body, dict):
            raise ApiError(resp.status_code, {**_fallback_body(resp), "code": "invalid_response",
                                              "error": "The server's answer was not a JSON object."})
        return body

    # -- operators ----------------------------------------------------------------------------------
    def report(self, period: str = "latest", day: str | None = None, since_s: int | None = None,
               period_id: str | None = None) -> dict[str, Any]:
        """period: latest | daily (day) | history (since_s) | weekly or monthly (period_id YYYY-Www / YYYY-MM)."""
        params: dict[str, Any] = {"period": period}
        if day:
            params["day"] = day
        if period_id:
            params["period_id"] = period_id
        if since_s is not None:
            params["since_s"] = since_s
        return self._json("GET", "/v1/monitoring/report", params=params)

    def limits(self) -> dict[str, Any]:
        return self._json("GET", "/v1/admin/limits")

    def set_limits(self, **changes: float | None) -> dict[str, Any]:
        return self._json("PATCH", "/v1/admin/limits", json=changes)

    def reset_limits(self) -> dict[str, Any]:
        return self._json("DELETE", "/v1/admin/limits")

    def circuit(self) -> dict[str, Any]:
        return self._json("GET", "/v1/admin/circuit")

    def force_circuit(self, state: str) -> dict[str, Any]:
        return self._json("POST", "/v1/admin/circuit", json={"state": state})

    def workers(self) -> dict[str, Any]:
        """Worker instances per queue (operators): GET /v1/admin/workers."""
        return self._json("GET", "/v1/admin/workers")

    def scale(self, queue: str, delta: int) -> dict[str, Any]:
        """Grow (delta > 0) or shrink a queue's worker pools (operators): POST /v1/admin/workers/scale."""
        return self._json("POST", "/v1/admin/workers/scale", json={"queue": queue, "delta": delta})

    def alerts(self, state: str = "firing", limit: int = 100) -> dict[str, Any]:
        """state: firing | pending | all | history."""
        return self._json("GET", "/v1/monitoring/alerts", params={"state": state, "limit": limit})

    def ack_alert(self, alert_id: str, comment: str = "", by: str | None = None) -> dict[str, Any]:
        body = {"comment": comment, **({"by": by} if by else {})}
        return self._json("POST", f"/v1/monitoring/alerts/{alert_id}/ack", json=body)

    def test_alerts(self) -> dict[str, Any]:
        """Send a test notification to every configured alert channel; returns the delivery attempts."""
        return self._json("POST", "/v1/monitoring/alerts/test")

    def silences(self) -> dict[str, Any]:
        return self._json("GET", "/v1/monitoring/silences")

    def add_silence(self, matchers: dict[str, str], duration_s: float, comment: str,
                    created_by: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"matchers": matchers, "duration_s": duration_s, "comment": comment}
        if created_by:
            body["created_by"] = created_by
        return self._json("POST", "/v1/monitoring/silences", json=body)

    def delete_silence(self, silence_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/v1/monitoring/silences/{silence_id}")

    # -- jobs ---------------------------------------------------------------------------------------
    def submit(self, images: builtins.list[Path | bytes], instruction: str, *, operation: str = "edit",
               num_images: int = 1, image_description: str | None = None, webhook_url: str | None = None,
               idempotency_key: str | None = None, options: Mapping[str, str | int] | None = None,
               from_jobs: Sequence[str] = ()) -> dict[str, Any]:
        """POST /v1/jobs as multipart/form-data; returns the accepted job.

        `options`: the per-job options (model, aspect_ratio, image_size, thinking_level, output_format, quality;
        docs/api.md). `from_jobs`: earlier outputs as inputs, each `<job_id>` (output 0) or `<job_id>:<n>`; they
        come after the uploaded images.
        """
        files = []
        for i, image in enumerate(images):
            name, data = (image.name, image.read_bytes()) if isinstance(image, Path) else (f"image-{i}", image)
            files.append(("image", (name, data, "application/octet-stream")))
        form: dict[str, Any] = _fields(instruction, operation, num_images, image_description, webhook_url)
        form.update({name: str(value) for name, value in (options or {}).items()})
        # Plain fields as file-less parts: the body is multipart even with no upload (only from_job references).
        parts: builtins.list[tuple[str, tuple[str | None, Any, str] | tuple[None, str]]] = [
            (name, (None, str(value))) for name, value in form.items()]
        parts += [("from_job", (None, ref)) for ref in from_jobs]
        return self._json("POST", "/v1/jobs", files=[*parts, *files], headers=_idem(idempotency_key))

    def submit_json(self, images: builtins.list[Path | bytes], instruction: str, *, operation: str = "edit",
                    num_images: int = 1, image_description: str | None = None, webhook_url: str | None = None,
                    idempotency_key: str | None = None, mime_type: str | None = None,
                    options: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        """POST /v1/jobs as JSON with base64 images; returns the accepted job."""
        encoded = []
        for image in images:
            data = image.read_bytes() if isinstance(image, Path) else image
            item: dict[str, Any] = {"data": base64.b64encode(data).decode("ascii")}
            if mime_type:
                item["mime_type"] = mime_type
            encoded.append(item)
        body: dict[str, Any] = {**_fields(instruction, operation, num_images, image_description, webhook_url),
                                "images": encoded}
        body["num_images"] = num_images
        body.update(options or {})
        return self._json("POST", "/v1/jobs", json=body, headers=_idem(idempotency_key))

    def get(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def models(self) -> dict[str, Any]:
        """GET /v1/models: the catalogue (ids, sizes, aspect ratios, thinking levels, lifecycle)."""
        return self._json("GET", "/v1/models")

    def usage(self, period: str = "day") -> dict[str, Any]:
        """GET /v1/usage?period=day|month: the caller's tokens and estimated cost (operators: per key)."""
        return self._json("GET", "/v1/usage", params={"period": period})

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/v1/jobs/{job_id}")

    def list(self, status: str | None = None, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, str | int] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        return self._json("GET", "/v1/jobs", params=params)

    def download(self, job_id: str, n: int) -> bytes:
        return self._send("GET", f"/v1/jobs/{job_id}/outputs/{n}", headers={"Accept": "image/*"}).content

    def wait(self, job_id: str, timeout_s: float = 300, poll_s: float = 0.5, *,
             clock: Clock | None = None) -> dict[str, Any]:
        """Poll until the job is terminal; unknown statuses count as non-terminal (docs/api.md#status).

        A 429/503 while polling waits for its Retry-After and polls again; other errors propagate. Raises
        ApiError code `wait_timeout` when `timeout_s` passes first (the job keeps running server-side). The
        deadline runs on `clock.monotonic()` and pauses are `clock.sleep` (default: the system clock).
        """
        clock = clock or SystemClock()
        deadline = clock.monotonic() + timeout_s
        while True:
            pause = poll_s
            try:
                job = self.get(job_id)
                if job.get("status") in TERMINAL_STATUSES:
                    return job
            except ApiError as exc:
                if exc.status not in _RETRYABLE:
                    raise
                pause = min(exc.retry_after_s if exc.retry_after_s is not None else poll_s, _MAX_RETRY_AFTER_S)
                job = {}
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                raise ApiError(0, {
                    "error": f"Job {job_id} did not finish within {timeout_s:g} s.", "code": "wait_timeout",
                    "details": f"last status: {job.get('status', 'unknown')}",
                    "suggestion": "The job is still running server-side: check it later with "
                                  f"`nanoedit status {job_id}`, or wait longer (--timeout).",
                    "status_code": 0})
            clock.sleep(max(0.0, min(pause, remaining)))

    # -- service ------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    def ready(self, detailed: bool = False) -> dict[str, Any]:
        return self._json("GET", "/readyz", params={"detailed": "true"} if detailed else None)

    def index(self) -> dict[str, Any]:
        return self._json("GET", "/v1")


def _fields(instruction: str, operation: str, num_images: int, image_description: str | None,
            webhook_url: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"instruction": instruction, "operation": operation, "num_images": str(num_images)}
    if image_description:
        fields["image_description"] = image_description
    if webhook_url:
        fields["webhook_url"] = webhook_url
    return fields


def _idem(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}
