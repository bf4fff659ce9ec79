"""Process facts from /proc (Linux): a process's children and its memory figures, for the e2e memory checks."""

from __future__ import annotations

import contextlib
from pathlib import Path


def children(pid: int) -> list[int]:
    """Direct children of `pid` (e.g. the gunicorn workers of a master)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def status_kb(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` figure in kB, e.g. VmHWM (peak RSS) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS ("5" to clear_refs, Linux ≥ 4.0); where refused, the peak since start counts."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
