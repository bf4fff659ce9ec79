"""The OpenAPI document is exactly true: schemathesis, with every check it has, against the served document of a
real stack (gunicorn, workers, beat). Schema-valid requests are accepted, schema-violating ones refused, every
answer matches its documented status, headers, content type and schema; 0 failures.

Its own stack, because the run forces the circuit open, changes fleet limits and creates silences. The seed is
fixed so CI is repeatable; NANOEDIT_CONTRACT_SEED and NANOEDIT_CONTRACT_EXAMPLES explore further by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import RedisServer, Stack, start_stack

pytestmark = pytest.mark.e2e
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def contract_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(redis_server.url(5), tmp_path_factory.mktemp("contract"), preprocess=1, generate=(2,),
                    beat=True, NANOEDIT_POOL_MAX_PROCESSES="3")  # scaleWorkers resizes real pools: keep them small
    yield s
    s.stop()


def test_every_schemathesis_check_passes_against_the_served_document(contract_stack: Stack,
                                                                      tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    seed = os.environ.get("NANOEDIT_CONTRACT_SEED", "20261130")
    examples = os.environ.get("NANOEDIT_CONTRACT_EXAMPLES", "40")
    run = subprocess.run(
        [str(st), "--config-file", str(CONFIG), "run", f"{contract_stack.url}/openapi.json", "--checks", "all",
         "--max-examples", examples, "--seed", seed, "--workers", "1",
         "--request-timeout", "30", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=420)
    report = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(report)
    Path(os.environ.get("NANOEDIT_CONTRACT_REPORT", os.devnull)).write_text(report)
    summary = [line for line in report.splitlines() if "generated" in line or "failures" in line.lower()]
    print("\n".join(summary[-3:]))
    assert run.returncode == 0, report[-20000:]
