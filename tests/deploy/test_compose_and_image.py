"""deploy/: the compose file and the container image, validated offline (no Docker). Kubernetes and the one
command per process: test_manifests.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

from tests.deploy.manifests import (
    COMPOSE_PROMETHEUS,
    DEPLOY,
    DOCKERFILE,
    ENTRYPOINT,
    ROOT,
    WORKER_POOLS,
    compose,
    docs,
    healthcheck,
    longest_task_s,
    nanoedit_services,
    procfile,
    seconds,
)
from tests.support.stack import require_binary


# -- compose specifics ------------------------------------------------------------------------------------------
def test_compose_redis_is_durable_and_never_evicts() -> None:
    redis = compose()["services"]["redis"]
    command = " ".join(redis["command"])

    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert flag in command
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_compose_services_restart_wait_for_their_dependencies_and_drain_longer_than_a_task() -> None:
    services = nanoedit_services()
    all_services = compose()["services"]

    assert services["beat"]["deploy"]["replicas"] == 1
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        for dependency, condition in service["depends_on"].items():
            assert dependency in all_services
            assert condition["condition"] in ("service_healthy", "service_completed_successfully")
        if name in WORKER_POOLS:
            assert seconds(service["stop_grace_period"]) > longest_task_s(name), name


def test_compose_shares_one_blob_store_and_one_configuration() -> None:
    services = nanoedit_services()
    all_services = compose()["services"]
    envs = [s["environment"] for s in services.values()]

    assert all(e == envs[0] for e in envs)  # derived limits must agree across processes
    env = envs[0]
    assert env["NANOEDIT_BLOB_URL"].startswith("s3://")
    assert env["NANOEDIT_S3_ENDPOINT_URL"].split("//")[1].split(":")[0] in all_services
    assert env["NANOEDIT_REDIS_URL"].split("//")[1].split(":")[0] in all_services
    # the image binds 0.0.0.0, which needs auth on: compose refuses to start without keys
    assert env["NANOEDIT_API_KEYS"].startswith("${NANOEDIT_API_KEYS:?")
    assert env["NANOEDIT_KEY_HASH_SECRET"].startswith("${NANOEDIT_KEY_HASH_SECRET:?")


def test_compose_prometheus_scrapes_every_process_that_serves_metrics(tmp_path: Path) -> None:
    config = docs(COMPOSE_PROMETHEUS)[0]
    all_services = compose()["services"]
    prometheus = all_services["prometheus"]

    targets = {(n, sd["port"]) for job in config["scrape_configs"] for sd in job["dns_sd_configs"]
               for n in sd["names"]}
    expected = {("web", 8000)} | {(p, int(healthcheck.process_env(p, {})["NANOEDIT_METRICS_PORT"]))
                                  for p in WORKER_POOLS}
    assert targets == expected
    assert {n for n, _ in targets} <= set(all_services)
    assert f"--config.file=/etc/prometheus/{COMPOSE_PROMETHEUS.name}" in prometheus["command"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    web_job = next(j for j in config["scrape_configs"] if j["job_name"] == "nanoedit-web")
    secret = web_job["authorization"]["credentials_file"].removeprefix("/run/secrets/")
    assert secret in prometheus["secrets"] and secret in compose()["secrets"]
    # promtool: the config and the rules beside it (the token file swapped for a local one)
    shutil.copy(DEPLOY / "prometheus" / "rules.yml", tmp_path / "rules.yml")
    (tmp_path / "token").write_text("t")
    web_job["authorization"]["credentials_file"] = str(tmp_path / "token")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    binary = require_binary("promtool")
    result = subprocess.run([binary, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_grafana_is_provisioned_with_the_dashboard_and_the_compose_prometheus() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    datasource = docs(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[0]["datasources"][0]
    provider = docs(DEPLOY / "grafana" / "provisioning" / "dashboards" / "nanoedit.yml")[0]["providers"][0]

    for source in mounts:
        assert (DEPLOY / source).exists(), source
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboard_path = mounts["./grafana/nanoedit-dashboard.json"]
    assert dashboard_path.startswith(provider["options"]["path"] + "/")
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"


# -- the image -------------------------------------------------------------------------------------------------
def final_stage(parser: DockerfileParser) -> list[dict[str, Any]]:
    instructions = [i for i in parser.structure if i["instruction"] != "COMMENT"]
    last_from = max(n for n, i in enumerate(instructions) if i["instruction"] == "FROM")
    return instructions[last_from:]


def test_dockerfile_builds_one_non_root_image_that_runs_a_procfile_process() -> None:
    parser = DockerfileParser(str(DOCKERFILE))
    stage = final_stage(parser)
    by = {i["instruction"]: i["value"] for i in stage}
    runs = " ".join(i["value"] for i in stage if i["instruction"] == "RUN")

    assert sum(1 for i in parser.structure if i["instruction"] == "FROM") >= 2  # multi-stage
    assert by["USER"].split(":")[0] not in ("root", "0")
    assert json.loads(by["ENTRYPOINT"]) == ENTRYPOINT
    assert json.loads(by["CMD"]) == ["web"] and "web" in {e.name for e in procfile.entries()}
    assert by["HEALTHCHECK"].split("CMD", 1)[1].strip() == json.dumps(["python", "deploy/healthcheck.py", "web"])
    assert parser.envs["NANOEDIT_HOST"] == "0.0.0.0"
    assert "pip install" in runs and " -e " not in runs and "--editable" not in runs
    assert not re.search(r"\b(apt-get|apk|gcc|build-essential)\b", runs)  # no build tools in the final image
    assert parser.baseimage.startswith("python:3.1") or "PYTHON_IMAGE" in parser.content


def test_dockerfile_copies_only_what_exists_and_the_dockerignore_keeps() -> None:
    parser = DockerfileParser(str(DOCKERFILE))
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    sources = []
    for i in parser.structure:
        if i["instruction"] == "COPY" and "--from" not in i["value"]:
            sources += i["value"].split()[:-1]

    assert "Procfile" in sources and "deploy/procfile.py" in sources and "deploy/healthcheck.py" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not any(source == p or source.startswith(p.rstrip("/") + "/") for p in ignored), source
    assert {".venv", "var", ".git"} <= ignored
