"""Run every CPU benchmark of issue #15 one after another (what ``make bench`` does).

Usage::

    python bench/run_all.py [--only NAME ...] [--list]

Each script measures its peer (SciPy, lapx, torch, graspologic, batched NumPy, the previous code)
in its own run and writes its table to ``bench/results/``.  A script not in this tree is named and
skipped; a peer that is not installed is named (``pip install -e ".[bench]"``); a script that
fails does not stop the others, but the run exits 1 and names it.  The wall time of every script
goes to ``bench/results/bench_run.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine_lines

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

# (script, arguments, peers as importable modules, peers in words, table written)
SCRIPTS = [
    ("cka.py", [], ["torch"], "torch (float64, float32), naive Gram-form NumPy",
     "cka.md, cka_torch.md"),
    ("cka_matrix_units.py", [], [], "previous concatenated SYRK, same run", "cka_matrix_units.md"),
    ("qap.py", [], ["scipy"], "scipy.optimize.quadratic_assignment", "qap.md"),
    ("qap_symmetric.py", [], ["scipy"], "SciPy, the previous asymmetric path", "qap_symmetric.md"),
    ("qap_restarts.py", [], [], "the previous restart code, same run", "qap_restarts.md"),
    ("qap_pool.py", [], ["scipy"], "SciPy, the code before the restart pool, same run",
     "qap_pool.md"),
    ("lap.py", [], ["lap", "scipy"], "lapx.lapjvc, scipy linear_sum_assignment", "lap.md"),
    ("local_cka.py", [], [], "reference per-pair loop, batched NumPy", "local_cka.md"),
    ("match_scale.py", [], ["scipy"], "dense LAP matching", "match_scale.md"),
    ("embed.py", [], ["torch"], "one-at-a-time encoder loop", "embed.md"),
    ("import_csv.py", [], [], "csv.reader loop, numpy.loadtxt", "import.md"),
]


def missing_peers(mods: list[str]) -> list[str]:
    return [m for m in mods if importlib.util.find_spec(m) is None]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="script names (e.g. cka.py lap.py)")
    ap.add_argument("--list", action="store_true", help="print the scripts and peers, run nothing")
    args = ap.parse_args(argv)
    chosen = [s for s in SCRIPTS if args.only is None or s[0] in args.only]
    if args.only:
        unknown = sorted(set(args.only) - {s[0] for s in SCRIPTS})
        if unknown:
            print(f"bench: error: unknown script(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
    if args.list:
        for name, _, _, peers, table in chosen:
            print(f"{name:24s} {peers}  ->  bench/results/{table}")
        return 0
    rows, failed = [], []
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    for name, extra, mods, peers, table in chosen:
        path = BENCH / name
        if not path.exists():
            print(f"bench: skipped {name}: not in this tree", flush=True)
            rows.append((name, peers, "—", "skipped: not in this tree"))
            continue
        gone = missing_peers(mods)
        if gone:
            print(f"bench: {name}: peer module(s) not installed: {', '.join(gone)} "
                  f"(pip install -e \".[bench]\")", flush=True)
        print(f"bench: running {name} ...", flush=True)
        t = time.perf_counter()
        rc = subprocess.call([sys.executable, str(path), *extra], cwd=BENCH.parent, env=env)
        dt = time.perf_counter() - t
        status = f"ok -> bench/results/{table}" if rc == 0 else f"FAILED (exit {rc})"
        if gone:
            status += f"; peers missing: {', '.join(gone)}"
        if rc:
            failed.append(name)
        rows.append((name, peers, f"{dt / 60:.1f}", status))
        print(f"bench: {name}: {status} in {dt:.0f} s", flush=True)
    if args.only is None:  # a partial run does not overwrite the full run's record
        lines = ["# `make bench` run", "", *machine_lines("cpu"),
                 f"- finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
                 "| script | peer (same run) | minutes | status |", "|---|---|---:|---|"]
        lines += [f"| `{a}` | {b} | {c} | {d} |" for a, b, c, d in rows]
        (RESULTS / "bench_run.md").write_text("\n".join(lines) + "\n")
    if failed:
        print(f"bench: error: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
