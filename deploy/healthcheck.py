"""Container health check of one Procfile process: `python deploy/healthcheck.py NAME`, exit 0 = healthy.

Used by the image's HEALTHCHECK (web), by docker-compose.yml (each service passes its own name) and by the
Kubernetes exec probes (deploy/k8s). It is a *liveness* check: it asks whether this container's process still
works, never whether the fleet does (that is `/readyz`), so an outage of Redis or of another pool never makes
an orchestrator restart healthy containers.

- `web`: `GET /healthz` on this container's API port (200 while the process answers).
- Celery worker pools (`preprocess`, `generate`, `webhooks`, any Procfile line that sets NANOEDIT_METRICS_PORT):
  `GET /metrics` on the instance's metrics port, served by the Celery main process once it is ready
  (workers/metrics_server.py). The port comes from the Procfile line itself (`NANOEDIT_METRICS_PORT=${VAR:-9101}`
  expanded against the environment), so it is written once.
- `beat` (no port of its own): its heartbeat in Redis, judged by the one liveness rule (shared/liveness.py).
  Stale means unhealthy; Redis unreachable counts as healthy here (a Redis outage is not beat's fault, and
  restarting beat would not help).

Standard library plus `shared` only, and one request with a short timeout: probes run every few seconds.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

from procfile import entry

from shared.clock import SystemClock
from shared.liveness import WorkerRegistry
from shared.redis_conn import redis_client
from shared.settings import Settings

TIMEOUT_S = 3.0
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Z_][A-Z0-9_]*)=(?P<value>\S+)\s+")
_DEFAULT = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):-(?P<default>[^}]*)\}")


def process_env(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """The environment the Procfile line `name` runs with: `env` plus its leading `VAR=value` assignments, whose
    `${VAR:-default}` parts are expanded as bash would (unset or empty → the default)."""
    command = entry(name).command
    merged = dict(env)
    while match := _ASSIGNMENT.match(command):
        value = _DEFAULT.sub(lambda m: env.get(m["name"]) or m["default"], match["value"])
        merged[match["name"]] = value
        command = command[match.end():]
    return merged


def _local(host: str) -> str:
    """Where to reach a server bound to `host` from inside its own container."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def http_ok(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
            return answer.status == 200, f"{url}: HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def check(name: str, env: Mapping[str, str]) -> tuple[bool, str]:
    """(healthy, one line saying why) for the Procfile process `name`."""
    full = process_env(name, env)
    settings = Settings.from_env(full)
    if name == "web":
        return http_ok(f"http://{_local(settings.host)}:{settings.port}/healthz")
    if name == "beat":
        return _beat(settings)
    if settings.metrics_port:
        return http_ok(f"http://{_local(settings.host)}:{settings.metrics_port}/metrics")
    return False, f"{name}: no health check (no NANOEDIT_METRICS_PORT on its Procfile line)"


def _beat(settings: Settings) -> tuple[bool, str]:
    registry = WorkerRegistry(redis_client(settings), settings.redis_prefix, SystemClock(),
                              settings.worker_heartbeat_s)
    try:
        age = registry.beat_age_s()
    except Exception as exc:  # Redis down or refusing: not beat's fault, do not restart it
        return True, f"beat: Redis unreachable ({type(exc).__name__}); not judged"
    if registry.beat_alive(age):
        return True, f"beat: heartbeat {age:.0f} s old"
    return False, f"beat: heartbeat {'missing' if age is None else f'{age:.0f} s old'} " \
                  f"(alive while ≤ {registry.beat_window_s:.0f} s)"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python deploy/healthcheck.py NAME  (a Procfile process)", file=sys.stderr)
        return 2
    try:
        healthy, why = check(argv[0], os.environ)
    except KeyError as exc:
        print(f"healthcheck: {exc.args[0]}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bad setting (SettingsError) or anything else: unhealthy, and say why
        healthy, why = False, f"{argv[0]}: {type(exc).__name__}: {exc}"
    print(why, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
