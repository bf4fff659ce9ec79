"""What hangs off a job's one terminal write: Prometheus samples, the outcome sample for reports, the webhook.

`JobStore` calls the hook once per job, in whichever process won the terminal write (a worker, or the API when a
cancel ends a job at once); both build it here so they cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from monitoring import metrics
from monitoring.outcomes import OutcomeRecorder
from shared.errors import NanoeditError
from shared.jobs.store import JobStore

log = logging.getLogger("nanoedit.hooks")


def install_terminal_hook(store: JobStore, recorder: OutcomeRecorder,
                          enqueue_webhook: Callable[[str], None]) -> None:
    def on_terminal(job_id: str) -> None:
        try:
            job = store.get(job_id)
        except NanoeditError:
            return
        if job is None:
            return
        metrics.job_finished(job)  # process-local, cannot fail: before anything that talks to Redis
        if job.webhook_url:
            enqueue_webhook(job_id)
        latency = job.finished_at - job.created_at if job.finished_at is not None else None
        recorder.job_finished(job_id, status=job.status, error_code=job.error.code if job.error else None,
                              latency_s=latency, attempts=job.attempts)

    store.on_terminal = on_terminal
