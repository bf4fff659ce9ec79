"""The web process never imports worker code (Pillow-heavy preprocessing, google-genai): docs/architecture.md,
"Layers and ownership"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wsgi_app_loads_no_worker_or_sdk_modules(tmp_path: Path) -> None:
    code = ("import json, sys; import api.wsgi; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('workers', 'google'))))")
    env = {**os.environ, "NANOEDIT_DATA_DIR": str(tmp_path), "NANOEDIT_REDIS_URL": "redis://127.0.0.1:1/0"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
