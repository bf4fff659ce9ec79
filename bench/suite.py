"""`make bench`: runs every scenario against its baseline in the same run, writes bench/results/latest.json
(figures + the machine they were measured on) and latest.md (the table in Markdown), prints a table of
figure / baseline / ratio and renders bench/results/latest.png (bench/chart.py).

    python -m bench [--quick] [--only NAME[,NAME]] [--out DIR] [--no-chart]
    python -m bench --rerender [--out DIR]     # table, latest.md and latest.png again from latest.json

A scenario is any object with `name`, `description`, `skip_reason()` and `run(quick) -> list[Figure]`
(bench/figures.py); add one by appending it to `SCENARIOS`. A scenario that cannot run here (a missing tool) is
skipped with its reason; one that fails is reported and the others still run (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.faults_bench import FaultsScenario
from bench.figures import Figure, Scenario
from bench.http_bench import HttpScenario
from bench.inflight import InFlightScenario
from bench.legacy import LimiterScenario, PipelineScenario
from bench.overhead_bench import OverheadScenario
from bench.preprocess_bench import PreprocessScenario
from bench.waiting_bench import WaitingScenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS: list[Scenario] = [HttpScenario(), PreprocessScenario(), WaitingScenario(), PipelineScenario(),
                             OverheadScenario(), InFlightScenario(), FaultsScenario(), LimiterScenario()]


def machine() -> dict[str, Any]:
    def first(path: str, prefix: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return ""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    mem_kb = first("/proc/meminfo", "MemTotal").split()
    return {"cpu_model": first("/proc/cpuinfo", "model name") or platform.processor(),
            "cores": os.cpu_count(), "ram_gb": round(int(mem_kb[0]) / 1024 / 1024, 1) if mem_kb else None,
            "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _num(v: float | None, digits: int = 1) -> str:
    if v is None or v != v:
        return "—"
    return f"{v:,.{digits}f}" if abs(v) < 1e6 else f"{v:,.0f}"


def table(figures: list[Figure]) -> str:
    rows = [f"  {'scenario':<10} {'figure':<36} {'value':>11} {'baseline':>11} {'unit':<7} {'ratio':>7}  target"]
    for f in figures:
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}×"
        flag = " !" if f.notes.startswith("INVALID") else ""
        rows.append(f"  {f.scenario:<10} {f.name:<36} {_num(f.value):>11} {_num(f.baseline):>11} {f.unit:<7} "
                    f"{ratio:>7}{flag}  {f.target}")
    return "\n".join(rows)


def markdown(figures: list[Figure], machine_info: dict[str, Any], quick: bool) -> str:
    """The same table as Markdown (bench/results/latest.md), for pasting into the README as generated."""
    m = machine_info
    lines = [f"{'Quick' if quick else 'Full'} run, {m['date']}, commit {str(m['git_commit'])[:10]}"
             f"{' (uncommitted changes)' if m['git_dirty'] else ''}: {m['cpu_model']}, {m['cores']} cores, "
             f"{m['ram_gb']} GB RAM, Python {m['python']}.", "",
             "| Scenario | Figure | nanoedit | Baseline | Ratio | Target | Baseline is |",
             "|---|---|--:|--:|--:|---|---|"]
    for f in figures:
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}×" + (" (invalid)" if f.notes.startswith("INVALID") else "")
        base = "—" if f.baseline is None else f"{_num(f.baseline)} {f.unit}"
        lines.append(f"| {f.scenario} | {f.name} | {_num(f.value)} {f.unit} | {base} | {ratio} | {f.target or '—'} | "
                     f"{f.baseline_name or '—'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs, fewer sizes (the ≤ 2 min smoke run)")
    ap.add_argument("--only", default="", help="comma-separated scenario names: " +
                    ", ".join(s.name for s in SCENARIOS))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where latest.json/png go")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument("--rerender", action="store_true", help="measure nothing: redo the table, latest.md and "
                    "latest.png from the figures in latest.json")
    args = ap.parse_args(argv)
    if args.rerender:
        saved = json.loads((args.out / "latest.json").read_text())
        write_outputs([Figure.from_dict(f) for f in saved["figures"]], saved, args.out, chart=not args.no_chart)
        return 0
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = wanted - {s.name for s in SCENARIOS}
    if unknown:
        ap.error(f"unknown scenario(s) {sorted(unknown)}; known: {[s.name for s in SCENARIOS]}")

    figures: list[Figure] = []
    runs: list[dict[str, Any]] = []
    failed = False
    for sc in SCENARIOS:
        if wanted and sc.name not in wanted:
            continue
        reason = sc.skip_reason()
        if not reason and args.quick and not wanted and not sc.in_quick_run:
            reason = f"not part of the quick run (`--quick --only {sc.name}` runs it)"
        if reason:
            print(f"== {sc.name}: SKIPPED — {reason}", file=sys.stderr, flush=True)
            runs.append({"name": sc.name, "status": "skipped", "reason": reason})
            continue
        print(f"== {sc.name}: {sc.description}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            got = sc.run(args.quick)
        except Exception as exc:  # one broken scenario must not lose the others' figures
            traceback.print_exc()
            failed = True
            runs.append({"name": sc.name, "status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000]})
            continue
        took = time.monotonic() - t0
        print(f"== {sc.name}: {len(got)} figures in {took:.0f} s", file=sys.stderr, flush=True)
        runs.append({"name": sc.name, "status": "ok", "seconds": round(took, 1)})
        figures += got

    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"quick": args.quick, "machine": machine(), "scenarios": runs, "figures": [f.to_dict() for f in figures],
           "ratio": "> 1 means nanoedit does better than the baseline (throughput: ours ÷ baseline; "
                    "latency/memory: baseline ÷ ours)"}
    (args.out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"  wrote {args.out / 'latest.json'}")
    write_outputs(figures, doc, args.out, chart=not args.no_chart)
    return 1 if failed else 0


def write_outputs(figures: list[Figure], doc: dict[str, Any], out: Path, *, chart: bool) -> None:
    """The table on stdout, latest.md and (with `chart`) latest.png, all from the figures of one run."""
    print(table(figures))
    for f in figures:
        if f.notes.startswith("INVALID"):
            print(f"  ! {f.scenario} {f.name}: {f.notes}")
    (out / "latest.md").write_text(markdown(figures, doc["machine"], bool(doc["quick"])))
    print(f"  wrote {out / 'latest.md'}")
    if chart and figures:
        from bench.chart import render  # Pillow only when a chart is wanted

        render(figures, doc["machine"], out / "latest.png", quick=bool(doc["quick"]))
        print(f"  wrote {out / 'latest.png'}")


if __name__ == "__main__":
    sys.exit(main())
