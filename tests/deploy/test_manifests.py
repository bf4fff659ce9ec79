"""deploy/: the container image, compose file and Kubernetes manifests, validated offline (no Docker, no cluster).

- Every YAML under deploy/ parses.
- Built-in Kubernetes objects pass kubernetes-validate's packaged JSON schemas in strict mode (unknown fields
  fail) for K8S_VERSION; KEDA ScaledObjects pass the trimmed schema vendored beside this file (its `$comment`
  says where it comes from), and their Prometheus queries parse with promtool and use only metrics we expose.
- kustomization.yaml lists every manifest of the base (secret.example.yaml excepted) and nothing missing.
- Every Procfile process runs in compose and in Kubernetes as `procfile.py run <name>` on the one image, exactly
  once, and nothing else runs on that image.
- The Dockerfile parses into instructions: multi-stage, non-root USER, HEALTHCHECK, the procfile ENTRYPOINT.
- Grace periods outlast the longest task a pool runs; beat is exactly one; compose's scrape targets exist.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from dockerfile_parse import DockerfileParser

from monitoring.metrics import metric_names
from tests.deploy.manifests import (
    BASE,
    DEPLOY,
    DOCKERFILE,
    ENTRYPOINT,
    K8S_VERSION,
    KEDA_SCHEMA,
    METRIC,
    NOT_APPLIED,
    WORKER_POOLS,
    deployments,
    docs,
    healthcheck,
    k8s_objects,
    kustomization,
    longest_task_s,
    nanoedit_services,
    procfile,
)
from tests.support.stack import require_binary


# -- YAML and schemas ----------------------------------------------------------------------------------------
def test_every_yaml_file_under_deploy_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])

    parsed = {f.relative_to(DEPLOY).as_posix(): docs(f) for f in files}

    assert "docker-compose.yml" in parsed and "k8s/base/kustomization.yaml" in parsed
    assert all(parsed.values()), [name for name, d in parsed.items() if not d]


def test_kustomization_lists_every_manifest_of_the_base_and_nothing_missing() -> None:
    listed = kustomization()["resources"]
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}

    assert len(listed) == len(set(listed))
    assert set(listed) == present - NOT_APPLIED
    assert (BASE / "secret.example.yaml").exists()


def test_builtin_kubernetes_objects_pass_the_strict_packaged_schemas() -> None:
    objects = [(n, d) for n, d in k8s_objects() if not d["apiVersion"].startswith("keda.sh/")]
    objects += [("secret.example.yaml", d) for d in docs(BASE / "secret.example.yaml")]

    kinds = set()
    for name, doc in objects:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        kinds.add(doc["kind"])

    assert kinds == {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"}


def test_strict_validation_refuses_a_misspelt_field() -> None:
    # Given the web Deployment with a typo an apply would silently drop
    doc = deployments()["nanoedit-web"]
    doc["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}

    # Then the strict schema refuses it (so the test above can fail)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def scaled_objects() -> list[dict[str, Any]]:
    return [d for _, d in k8s_objects() if d["kind"] == "ScaledObject"]


def test_scaled_objects_pass_the_vendored_keda_schema_and_target_the_worker_deployments() -> None:
    schema = json.loads(KEDA_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)

    targets = []
    for so in scaled_objects():
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(so)]
        assert not errors, (so["metadata"]["name"], errors)
        targets.append(so["spec"]["scaleTargetRef"]["name"])

    assert sorted(targets) == sorted(f"nanoedit-{p}" for p in WORKER_POOLS)
    assert set(targets) <= set(deployments())
    # and the schema is not vacuous: a number where KEDA wants a string is refused
    broken = json.loads(json.dumps(scaled_objects()[0]))
    broken["spec"]["triggers"][0]["metadata"]["threshold"] = 4
    assert not validator.is_valid(broken)


@pytest.mark.parametrize("pool", WORKER_POOLS)
def test_scaling_never_reaches_zero_and_scales_down_slower_than_the_longest_task(pool: str) -> None:
    so = next(s for s in scaled_objects() if s["spec"]["scaleTargetRef"]["name"] == f"nanoedit-{pool}")
    spec = so["spec"]
    down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]

    assert spec["minReplicaCount"] >= 1 and spec["maxReplicaCount"] >= spec["minReplicaCount"]
    assert spec["cooldownPeriod"] > longest_task_s(pool)
    assert down["stabilizationWindowSeconds"] > longest_task_s(pool)
    assert "replicas" not in deployments()[f"nanoedit-{pool}"]["spec"]  # KEDA owns it


def test_scaler_queries_count_the_fair_lines_parse_as_promql_and_use_only_our_metrics(tmp_path: Path) -> None:
    triggers = [t for so in scaled_objects() for t in so["spec"]["triggers"]]
    queries = [t["metadata"]["query"] for t in triggers]

    assert all(t["type"] == "prometheus" for t in triggers)
    assert all({"serverAddress", "query", "threshold"} <= set(t["metadata"]) for t in triggers)
    assert all(float(t["metadata"]["threshold"]) > 0 for t in triggers)
    # not the Celery list (≤ NANOEDIT_FAIR_QUEUE_DEPTH): the depth gauge includes the per-key fair lines
    assert all('nanoedit_queue_depth{queue="' in q for q in queries)
    used = {n for q in queries for n in METRIC.findall(q)}
    assert used <= set(metric_names()), used - set(metric_names())
    rules = {"groups": [{"name": "keda", "rules": [{"record": f"keda:q{i}", "expr": q}
                                                   for i, q in enumerate(queries)]}]}
    (tmp_path / "keda_rules.yml").write_text(json.dumps(rules))
    binary = require_binary("promtool")
    result = subprocess.run([binary, "check", "rules", "keda_rules.yml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def query_of(pool: str) -> str:
    so = next(s for s in scaled_objects() if s["spec"]["scaleTargetRef"]["name"] == f"nanoedit-{pool}")
    return str(so["spec"]["triggers"][0]["metadata"]["query"])


def expect(**values: int) -> list[dict[str, Any]]:
    return [{"expr": f"keda:{p}", "eval_time": "2m", "exp_samples": [{"labels": f"keda:{p}", "value": v}]}
            for p, v in values.items()]


def test_scaler_queries_add_running_work_clamp_generate_to_the_cap_and_fail_without_the_api(tmp_path: Path) -> None:
    # Given two API replicas reporting the same fleet gauges (a backlog of 1000 preprocess jobs, mostly in fair
    # lines; 100 generate items with 3 calls in flight under a cap of 3) and two preprocess pods running 2 tasks
    fleet = {'nanoedit_queue_depth{queue="preprocess"}': 1000, 'nanoedit_queue_depth{queue="generate"}': 100,
             'nanoedit_queue_depth{queue="webhooks"}': 5, "nanoedit_limiter_in_flight": 3,
             "nanoedit_limiter_concurrency_limit": 3}
    series = [{"series": f"{name[:-1]},instance=\"web-{i}\"}}" if name.endswith("}")
               else f"{name}{{instance=\"web-{i}\"}}", "values": f"{value}x5"}
              for name, value in fleet.items() for i in (1, 2)]
    series += [{"series": f'nanoedit_tasks_in_progress{{task="nanoedit.preprocess",instance="pre-{i}"}}',
                "values": "1x5"} for i in (1, 2)]
    rules = {"groups": [{"name": "keda", "rules": [{"record": f"keda:{p}", "expr": query_of(p)}
                                                   for p in WORKER_POOLS]}]}
    tests = {"rule_files": ["keda_rules.yml"], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": series, "promql_expr_test": [
            # Then: waiting (fair lines included) + running; generate clamped to the fleet cap; worker metrics optional
            *expect(preprocess=1002, generate=3, webhooks=5)]},
        # and without the API's gauges there is no answer (KEDA's fallback), never "no work"
        {"interval": "1m", "input_series": [s for s in series if "tasks_in_progress" in s["series"]],
         "promql_expr_test": [{"expr": f"keda:{p}", "eval_time": "2m", "exp_samples": []} for p in WORKER_POOLS]},
    ]}
    (tmp_path / "keda_rules.yml").write_text(json.dumps(rules))
    (tmp_path / "keda_test.yml").write_text(json.dumps(tests))

    binary = require_binary("promtool")
    result = subprocess.run([binary, "test", "rules", "keda_test.yml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# -- one command per process -----------------------------------------------------------------------------------
def test_every_procfile_process_runs_once_in_compose_as_its_procfile_line() -> None:
    names = [e.name for e in procfile.entries()]
    services = nanoedit_services()

    by_command = {}
    for service_name, service in services.items():
        assert "entrypoint" not in service, f"{service_name} overrides the image's procfile ENTRYPOINT"
        command = service["command"]
        assert isinstance(command, list) and len(command) == 1, (service_name, command)
        by_command[command[0]] = service_name

    assert sorted(by_command) == sorted(names)
    assert len(by_command) == len(services)  # nothing else runs on the image
    assert all(service_name == name for name, service_name in by_command.items())


def test_every_procfile_process_runs_once_in_kubernetes_as_its_procfile_line() -> None:
    names = [e.name for e in procfile.entries()]

    ran = []
    for deployment in deployments().values():
        pod = deployment["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            assert container["image"].split(":")[0] == "nanoedit", container["name"]
            assert container["command"] == ENTRYPOINT, container["name"]
            assert len(container["args"]) == 1, container["name"]
            ran.append(container["args"][0])

    assert sorted(ran) == sorted(names)
    assert {d["metadata"]["name"] for d in deployments().values()} == {f"nanoedit-{n}" for n in names}


def test_health_checks_name_their_own_process() -> None:
    # compose: every service's check is deploy/healthcheck.py with its own name
    for name, service in nanoedit_services().items():
        assert service["healthcheck"]["test"] == ["CMD", "python", "deploy/healthcheck.py", name], name
    # kubernetes: web probes over HTTP, the others exec the same script with their own name
    for deployment in deployments().values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        name = container["args"][0]
        if name == "web":
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz?scope=web"
            continue
        probes = [container[p] for p in ("startupProbe", "livenessProbe") if p in container]
        assert probes and all(p["exec"]["command"] == ["python", "deploy/healthcheck.py", name] for p in probes)


def test_the_health_check_finds_each_worker_metrics_port_on_its_procfile_line() -> None:
    ports = {n: healthcheck.process_env(n, {}).get("NANOEDIT_METRICS_PORT") for n in WORKER_POOLS}

    assert ports == {"preprocess": "9101", "generate": "9102", "webhooks": "9103"}
    for pool in WORKER_POOLS:  # the pod's declared metrics port is the one the pool serves
        container = deployments()[f"nanoedit-{pool}"]["spec"]["template"]["spec"]["containers"][0]
        assert [p["containerPort"] for p in container["ports"]] == [int(ports[pool])]


# -- Kubernetes specifics ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool", WORKER_POOLS)
def test_worker_grace_period_outlasts_the_longest_task_it_runs(pool: str) -> None:
    pod = deployments()[f"nanoedit-{pool}"]["spec"]["template"]["spec"]

    assert pod["terminationGracePeriodSeconds"] > longest_task_s(pool)
    assert "lifecycle" not in pod["containers"][0]  # SIGTERM is Celery's warm shutdown: no preStop


def test_beat_is_exactly_one_and_recreated_never_rolled() -> None:
    beat = deployments()["nanoedit-beat"]

    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [so for so in scaled_objects() if so["spec"]["scaleTargetRef"]["name"] == "nanoedit-beat"]


def test_pods_run_as_non_root_on_a_read_only_root_with_a_writable_data_dir() -> None:
    data_dir = DockerfileParser(str(DOCKERFILE)).envs["NANOEDIT_DATA_DIR"]

    for name, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts[data_dir]], name
        assert "/tmp" in mounts, name
        assert {"requests", "limits"} <= set(container["resources"]), name
        refs = [next(iter(r.values()))["name"] for r in container["envFrom"]]
        assert refs == ["nanoedit-config", "nanoedit-secrets"], name  # the Secret wins over the ConfigMap


def test_disruption_budgets_and_the_service_select_existing_pods() -> None:
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments().items()}
    objects = [d for _, d in k8s_objects()]
    budgets = {d["metadata"]["name"]: d["spec"]["selector"]["matchLabels"] for d in objects
               if d["kind"] == "PodDisruptionBudget"}
    services = [d for d in objects if d["kind"] == "Service"]

    assert sorted(budgets) == ["nanoedit-generate", "nanoedit-preprocess", "nanoedit-web"]
    for name, selector in budgets.items():
        assert selector.items() <= labels[name].items(), name
    assert [s["spec"]["selector"].items() <= labels["nanoedit-web"].items() for s in services] == [True]


def test_the_configmap_holds_no_secret_and_the_secret_example_is_not_applied() -> None:
    config = next(d for _, d in k8s_objects() if d["kind"] == "ConfigMap")["data"]
    secret = docs(BASE / "secret.example.yaml")[0]["stringData"]

    assert not {k for k in config if re.search(r"KEY|TOKEN|SECRET|PASSWORD", k)}
    assert {"NANOEDIT_API_KEYS", "NANOEDIT_ADMIN_TOKEN", "NANOEDIT_KEY_HASH_SECRET", "NANOEDIT_WEBHOOK_SECRET",
            "GEMINI_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret)
    assert all(k.startswith(("NANOEDIT_", "AWS_")) for k in config)
