"""Benchmark: fastcka's cold CPU LAP against ``lapx.lapjvc`` and SciPy, in the same run (#15 item 6).

Cost families, n in ``--sizes`` (default 500 1000 2000 4000), one matrix per family and size:

- uniform: i.i.d. U(0, 1) costs;
- low-rank: ``U Vᵀ`` with standard normal factors of rank ``--rank`` (default 8) plus U(0, 1)
  noise;
- FAQ-like: the cost of FAQ's Frank–Wolfe direction LAP on dense random symmetric matrices
  (``A = R + Rᵀ``, R uniform, as ``bench/qap.py`` (b)): ``-∇f(P)/2 = -A P B`` at
  ``P = (J + Q)/2``, halfway between the barycentre ``J = 11ᵀ/n`` and a random permutation
  ``Q`` (where the first step leaves a restart).  The rank-one barycentre part dominates:
  every row prefers nearly the same columns.

Solvers, each timed cold on the same matrix, interleaved in ``--rounds`` rounds (median):
fastcka now (``lap_batch``, no warm start), fastcka before this change (``lap_batch`` at
``--baseline-rev``, when git has it, up to ``--baseline-max-n``), ``lap.lapjvc`` (lapx) and
``scipy.optimize.linear_sum_assignment``.  Every run's assignment is checked to reach SciPy's
optimal cost (relative 1e-12).  Ratios are peer time / fastcka time (> 1: fastcka faster).

Usage: ``python bench/lap.py [--sizes 500 1000 2000 4000] [--rounds 3] [--out DIR]``
(writes ``lap.md``; about 3–4 minutes on an idle 2-core machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_lines

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REV = "996f6f8"   # main before the raced cold start (one JV column-reduction start)


def uniform(n, rng):
    return rng.random((n, n))


def low_rank(n, rng, rank=8):
    return rng.standard_normal((n, rank)) @ rng.standard_normal((rank, n)) + rng.random((n, n))


def faq_like(n, rng):
    R = rng.random((n, n))
    A = R + R.T
    R = rng.random((n, n))
    B = R + R.T
    perm = rng.permutation(n)
    # A P B with P = (J + Q)/2, Q the permutation matrix of perm: (A1)(1ᵀB)/(2n) + A B[perm]/2
    G = 0.5 * (np.outer(A.sum(1), B.sum(0)) / n + A @ B[perm])
    return -G                                     # maximisation of trace(Gᵀ Q) as a minimisation


def baseline_solver(rev: str, tmp: Path):
    """``lap_batch`` of ``kernels/qap_cpu.py`` (``kernels/lap_cpu.py`` before they were merged)
    at git revision ``rev`` (None if unavailable)."""
    for name in ("qap_cpu", "lap_cpu"):
        try:
            src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:kernels/{name}.py"],
                                 check=True, capture_output=True, text=True).stdout
            break
        except (OSError, subprocess.CalledProcessError):
            continue
    else:
        return None
    path = tmp / "lap_cpu_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("lap_cpu_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.lap_batch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds (median); 1 at n ≥ 4000 to stay within minutes")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--baseline-rev", default=BASELINE_REV)
    ap.add_argument("--baseline-max-n", type=int, default=4000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    here = Path(__file__).resolve().parent     # this file is lap.py too: import lapx's `lap`
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(ROOT))
    import lap as lapx
    import scipy
    from scipy.optimize import linear_sum_assignment

    from fastcka.kernels.qap_cpu import lap_batch

    header = "\n".join(machine_lines("cpu", f", SciPy {scipy.__version__}, lapx "
                                     f"{getattr(lapx, '__version__', '?')}"))
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        before = baseline_solver(args.baseline_rev, Path(tmp)) if args.baseline_rev else None
        warm = np.random.default_rng(0).random((8, 8))
        lap_batch(warm)
        if before is not None:
            before(warm)
        solvers = {
            "fastcka": lambda C: lap_batch(C)[0],
            "before": (lambda C: before(C)[0]) if before is not None else None,
            "lapjvc": lambda C: lapx.lapjvc(C, return_cost=False)[1],
            "scipy": lambda C: linear_sum_assignment(C)[1],
        }
        families = {"uniform": uniform, "low-rank": lambda n, r: low_rank(n, r, args.rank),
                    "FAQ-like": faq_like}
        rows = []
        for n in args.sizes:
            rounds = 1 if n >= 4000 else args.rounds
            for fi, (fam, make) in enumerate(families.items()):
                C = np.ascontiguousarray(make(n, np.random.default_rng(1000 * n + fi)))
                r, c = linear_sum_assignment(C)
                opt = C[r, c].sum()
                times = {k: [] for k, f in solvers.items() if f is not None
                         and not (k == "before" and n > args.baseline_max_n)}
                for rd in range(rounds):
                    order = list(times) if rd % 2 == 0 else list(times)[::-1]   # interleaved
                    for name in order:
                        t = time.perf_counter()
                        cols = np.asarray(solvers[name](C))
                        times[name].append(time.perf_counter() - t)
                        got = C[np.arange(n), cols].sum()
                        if sorted(cols.tolist()) != list(range(n)) or \
                                abs(got - opt) > 1e-12 * max(1.0, abs(opt)):
                            raise SystemExit(f"{name} not optimal on {fam} n={n}: {got} vs {opt}")
                med = {k: float(np.median(v)) for k, v in times.items()}
                rows.append((n, fam, rounds, med))
                print(f"n={n} {fam}: " + ", ".join(f"{k} {v:.3f}s" for k, v in med.items()),
                      flush=True)
    total = time.perf_counter() - t_start
    write(Path(args.out) / "lap.md", header, rows, total, args)
    return 0


def write(path: Path, header: str, rows, total: float, args) -> None:
    def ratio(med, peer):
        return f"{med[peer] / med['fastcka']:.2f}×" if peer in med else "–"

    def sec(med, k):
        return f"{med[k]:.3f}" if k in med else "–"

    lines = ["# Cold dense LAP: fastcka against lapx.lapjvc and SciPy (issue 15 item 6)", "",
             header, f"- rounds: {args.rounds} (1 at n ≥ 4000), interleaved, median; "
             f"low-rank rank {args.rank}; whole run {total:.0f} s", "",
             "Every run's assignment reached SciPy's optimal cost (relative 1e-12).  Ratios are "
             "the peer's time over fastcka's in the same run (> 1: fastcka faster); *before* is "
             f"`lap_batch` at {args.baseline_rev}, "
             f"run up to n = {args.baseline_max_n}.", "",
             "| n | costs | fastcka (s) | before (s) | lapjvc (s) | SciPy (s) | lapjvc / fastcka "
             "| SciPy / fastcka | before / fastcka |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, fam, _, med in rows:
        lines.append(f"| {n} | {fam} | {sec(med, 'fastcka')} | {sec(med, 'before')} | "
                     f"{sec(med, 'lapjvc')} | {sec(med, 'scipy')} | {ratio(med, 'lapjvc')} | "
                     f"{ratio(med, 'scipy')} | {ratio(med, 'before')} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
