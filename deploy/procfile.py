"""The Procfile is the one list of nanoedit's processes; everything that runs them reads it through here.

`make up` (supervisord, deploy/supervise.py), the container image (docker-compose.yml) and the Kubernetes
manifests (deploy/k8s) all start a process by its Procfile name, so the command line is written once:

    python deploy/procfile.py run web        # exec the `web:` line through bash (its ${VAR:-default} expand)
    python deploy/procfile.py list           # the process names, one per line

Format: `name: command` per line; blank lines and `#` comments are ignored. A name is a lower-case word
(letters, digits, `-`, `_`). Hand-written rather than taken from honcho: the parser is ten lines, and the
launchers that use it must not depend on a process manager's internals.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"
_LINE = re.compile(r"^(?P<name>[a-z][a-z0-9_-]*):\s*(?P<command>\S.*)$")


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    command: str


def entries(path: Path = PROCFILE) -> list[Entry]:
    """Every process of the Procfile, in file order. A malformed or duplicate line raises ValueError."""
    found: list[Entry] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected `name: command`, got {raw!r}")
        if any(e.name == match["name"] for e in found):
            raise ValueError(f"{path}:{number}: process {match['name']!r} is listed twice")
        found.append(Entry(match["name"], match["command"]))
    return found


def entry(name: str, path: Path = PROCFILE) -> Entry:
    for e in entries(path):
        if e.name == name:
            return e
    known = ", ".join(e.name for e in entries(path))
    raise KeyError(f"no process {name!r} in {path} (known: {known})")


def main(argv: list[str]) -> int:
    if len(argv) == 1 and argv[0] == "list":
        print("\n".join(e.name for e in entries()))
        return 0
    if len(argv) == 2 and argv[0] == "run":
        try:
            command = entry(argv[1]).command
        except KeyError as exc:
            print(f"procfile: {exc.args[0]}", file=sys.stderr)
            return 2
        # exec: the process *is* the Procfile command (signals from the supervisor reach it directly). Through
        # `env`, because a line may start with assignments (`NANOEDIT_METRICS_PORT=… python …`), which bash's
        # `exec` does not take; `env` execs in turn, so the process id (and `$$` in the line) stays the same.
        os.execvp("bash", ["bash", "-c", f"exec env {command}"])
    print("usage: python deploy/procfile.py list | run NAME", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
