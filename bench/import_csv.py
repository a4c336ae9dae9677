"""Benchmark of CSV import: the Numba parser of ``fastcka.sources`` against the row loop it replaced.

Usage::

    python bench/import_csv.py [--rows 10000] [--dim 384] [--repeat 3] [--out bench/results/import.md]

Inputs (written to a temporary folder): an ``rows x dim`` table of standard normal values as
CSV, in two spellings common for embeddings: ``repr`` of float64 (17 significant digits, the
hard case for a parser) and float32 values printed with ``%.8g``.  Contenders, interleaved and
repeated, each reading the whole file into a float64 array with the same validation:

- **row loop** (the reference: ``csv.reader`` + ``float()`` per cell, what ``fastcka import``
  did before; kept as ``fastcka.sources._text_table_rows``, which still words the errors);
- **ours** (``fastcka.sources.read_source``: the Numba parser, correctly rounded, falling back
  to the row loop for anything it does not take as it is);
- ``numpy.loadtxt`` (C parser, for scale) and ``pandas.read_csv`` (C engine, when installed).

Each contender's result is checked equal to the row loop's (bit for bit; pandas' default float
parser is not correctly rounded, so its agreement is reported, not required).  The table gives
the median wall and CPU seconds and the same-run ratios to the row loop; the first-run compile of
the kernel (a fresh Numba cache, in a subprocess) is timed separately.  Writes the markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_lines

ROOT = Path(__file__).resolve().parents[1]


def _contenders():
    from fastcka import sources

    out = {"row loop": lambda p: sources._text_table_rows(p)[0],
           "ours": lambda p: sources.read_source(p, engine="fast")[0],
           "numpy.loadtxt": lambda p: np.loadtxt(p, delimiter=",", dtype=np.float64)}
    try:
        import pandas as pd

        out["pandas.read_csv"] = lambda p: pd.read_csv(p, header=None, dtype=np.float64).to_numpy()
    except ImportError:
        pass
    return out


def _time(f, p):
    w, c = time.perf_counter(), time.process_time()
    X = f(p)
    return time.perf_counter() - w, time.process_time() - c, X


def _first_run_compile(p: Path) -> float:
    """Wall seconds of one read in a fresh process with an empty Numba cache (compile included)."""
    code = ("import time,sys; from fastcka import sources; t=time.perf_counter(); "
            "sources.read_source(sys.argv[1], engine='fast'); print(time.perf_counter()-t)")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        r = subprocess.run([sys.executable, "-c", code, str(p)], env=env, capture_output=True,
                           text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "import.md"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((a.rows, a.dim))
    contenders = _contenders()
    lines = ["# CSV import: the Numba parser vs the row loop", "",
             *machine_lines("cpu"),
             "- the machine may be shared with other jobs: wall times are then noisy, the CPU "
             "seconds (process time) less so", "",
             f"Table {a.rows:,} x {a.dim} (`python bench/import_csv.py --rows {a.rows} --dim "
             f"{a.dim} --repeat {a.repeat}`), median of {a.repeat} interleaved runs after a "
             f"warm-up; ratio = row loop / contender, same run.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        files = {"float64 repr (17 digits)": (Path(tmp) / "f64.csv", lambda v: repr(v)),
                 "float32 %.8g": (Path(tmp) / "f32.csv", lambda v: f"{v:.8g}")}
        for label, (p, fmt) in files.items():
            vals = X if "float64" in label else X.astype(np.float32).astype(np.float64)
            p.write_text("\n".join(",".join(fmt(v) for v in row) for row in vals.tolist()) + "\n")
        compile_s = _first_run_compile(files["float64 repr (17 digits)"][0])
        for label, (p, _) in files.items():
            ref = contenders["row loop"](p)
            for f in contenders.values():          # warm-up (and the kernel's cached compile)
                f(p)
            times: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
            agree = {}
            for _ in range(a.repeat):
                for name, f in contenders.items():
                    w, c, got = _time(f, p)
                    times[name].append((w, c))
                    agree[name] = got.shape == ref.shape and got.tobytes() == ref.tobytes()
            size = p.stat().st_size / 2**20
            lines += [f"## {label}, {size:.0f} MiB", "",
                      "| contender | wall s | CPU s | ratio (wall) | ratio (CPU) | same values as the row loop |",
                      "|---|---:|---:|---:|---:|---|"]
            med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
                   for k, v in times.items()}
            for name in contenders:
                w, c = med[name]
                lines.append(f"| {name} | {w:.2f} | {c:.2f} | {med['row loop'][0] / w:.1f}x | "
                             f"{med['row loop'][1] / c:.1f}x | {'yes' if agree[name] else 'no'} |")
            lines.append("")
    lines += [f"First read in a fresh process with an empty Numba cache (the kernel compiles once, "
              f"then loads from the cache): {compile_s:.1f} s wall.  `fastcka import` therefore "
              f"uses the parser only for files of at least "
              f"{__import__('fastcka.config').config.TEXT_PARSER_MIN_BYTES >> 20} MiB.", ""]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
