"""What hangs off a job's one terminal write: Prometheus samples, the outcome sample for reports, the webhook's
fast path.

`JobStore` calls the hook once per job, in whichever process won the terminal write (a worker, or the API when a
cancel ends a job at once); both build it here so they cannot drift apart. The webhook itself is not owed because
of this hook: the terminal write already recorded it in the outbox (shared/jobs/outbox.py), and beat's dispatcher
sends it even if this process dies before the hook runs; the enqueue here only saves the dispatcher's delay.
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
            try:  # fast path only: the outbox entry (written with the terminal status) is the source of truth
                enqueue_webhook(job_id)
            except Exception:
                log.warning("webhook fast-path enqueue failed; the dispatcher will send it", exc_info=True,
                            extra={"job_id": job_id})
        latency = job.finished_at - job.created_at if job.finished_at is not None else None
        recorder.job_finished(job_id, status=job.status, error_code=job.error.code if job.error else None,
                              latency_s=latency, attempts=job.attempts)

    store.on_terminal = on_terminal
