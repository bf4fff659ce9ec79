"""Shared by the deploy/ tests: where the manifests are, how to read them, and the longest task per pool."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "k8s" / "base"
COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_PROMETHEUS = DEPLOY / "prometheus" / "prometheus-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
KEDA_SCHEMA = Path(__file__).with_name("keda_scaledobject.schema.json")  # beside the tests
K8S_VERSION = "1.37.0"  # the newest kubernetes-validate 1.37.0 ships
NOT_APPLIED = {"secret.example.yaml"}
ENTRYPOINT = ["python", "deploy/procfile.py", "run"]
WORKER_POOLS = ("preprocess", "generate", "webhooks")
METRIC = re.compile(r"\bnanoedit_[a-z0-9_]+")

if str(DEPLOY) not in sys.path:  # deploy/*.py are scripts run from the repo root, not a package
    sys.path.insert(0, str(DEPLOY))
import healthcheck as healthcheck  # noqa: E402  (re-exported for the tests)
import procfile as procfile  # noqa: E402


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomization() -> dict[str, Any]:
    return docs(BASE / "kustomization.yaml")[0]


def k8s_objects() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in kustomization()["resources"]:
        for doc in docs(BASE / name):
            yield name, doc


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in k8s_objects() if d["kind"] == "Deployment"}


def compose() -> dict[str, Any]:
    return docs(COMPOSE)[0]


def nanoedit_services() -> dict[str, dict[str, Any]]:
    """Compose services on the nanoedit image."""
    return {n: s for n, s in compose()["services"].items() if str(s.get("image", "")).startswith("nanoedit:")}


def seconds(value: str | int) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(value))
    if isinstance(value, int) or match is None:
        return int(value)
    return int(match[1] or 0) * 60 + int(match[2] or 0)


def longest_task_s(pool: str) -> int:
    """The longest hard time limit of any task `pool` consumes (workers/tasks.py; defaults of Settings)."""
    s = Settings()
    tasks = (ROOT / "workers" / "tasks.py").read_text()
    literal = [int(x) for x in re.findall(r"\btime_limit=(\d+)", tasks)]
    # Maintenance tasks (reconcile, pump, health report, expire) run on the preprocess pool; expire is longest.
    # If a literal limit grows past 150 s, this table is stale: fail loudly.
    assert max(literal) == 150, "a maintenance task's time limit changed: update longest_task_s"
    webhook = int(s.webhook_resolve_timeout_s + s.webhook_timeout_s) + 30 + 30
    return {"preprocess": max(s.preprocess_hard_limit_s, 150), "generate": s.generate_hard_limit_s,
            "webhooks": max(webhook, 60)}[pool]
