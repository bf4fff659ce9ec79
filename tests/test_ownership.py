"""The job record has one owner: `shared/jobs/`. Nothing else builds a job key, reaches into the store's Redis
handle, or spells a job status as a string literal (use `JobStatus` / `OutputStatus` / `JobStage`).

Read from the source with `ast`, so a violation fails the build before it can drift into the code base.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from shared.jobs.model import JobStatus

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "workers", "shared", "monitoring", "bench")
OWNER = ROOT / "shared" / "jobs"

# Literal spellings of job keys (see shared/jobs/keys.py).
JOB_KEY = re.compile(r":(job|gone|waiting|owner|deliveries|idem|cache|webhooks):|:(expiry|deadlines)\b"
                     r"|:stats:recent_finishes")
STORE_PRIVATE = frozenset({"_r", "_keys"})
STATUS_VALUES = frozenset(s.value for s in JobStatus)

# A literal equal to a status name that is not a job status, with the reason.
NOT_A_STATUS: dict[tuple[str, str], str] = {
    ("shared/errors.py", "canceled"): "the public error code `canceled` (its ErrorSpec row)",
    ("api/alerts.py", "failed"): "the alert test route's `failed` list of channels (public response field)",
}


def violations(source: str, rel: str) -> list[str]:
    found: list[str] = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module == "shared.jobs.keys":
            found.append(f"{where}: imports the job key layout")
        elif isinstance(node, ast.Attribute) and node.attr in STORE_PRIVATE and not (
                isinstance(node.value, ast.Name) and node.value.id == "self"):
            found.append(f"{where}: reaches into a private `{node.attr}`")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if JOB_KEY.search(node.value):
                found.append(f"{where}: spells a job key ({node.value[:40]!r})")
            elif node.value in STATUS_VALUES and (rel, node.value) not in NOT_A_STATUS:
                found.append(f"{where}: spells the status {node.value!r} (use JobStatus/OutputStatus/JobStage)")
    return found


def modules_outside_the_owner() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py")) if OWNER not in p.parents]


def test_nothing_outside_shared_jobs_touches_job_keys_or_spells_a_status() -> None:
    found = [v for p in modules_outside_the_owner()
             for v in violations(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert found == []


@pytest.mark.parametrize(("source", "expected"), [
    ('r.hget(f"{p}:job:{job_id}", "status")', "spells a job key"),
    ('store._r.delete("x")', "reaches into a private `_r`"),
    ("ctx.store._keys.job('a')", "reaches into a private `_keys`"),
    ('if job.status == "running": pass', "spells the status 'running'"),
    ("from shared.jobs.keys import JobKeys", "imports the job key layout"),
])
def test_the_check_catches_each_kind_of_violation(source: str, expected: str) -> None:
    assert any(expected in v for v in violations(source, "api/example.py"))


def test_the_check_accepts_the_owned_way() -> None:
    ok = "if job.status == JobStatus.RUNNING:\n    store.fail_output(job_id, 0, error)\nself._r.get('x')\n"
    assert violations(ok, "workers/example.py") == []
