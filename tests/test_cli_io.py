"""The batch tool in pipes and batch jobs (issue 16 items 2-5): ``--threads``, ``-`` for stdin
id files and stdout tables, ``--format``, long CSV and JSON Lines, the documented HDF5 layout.

Everything runs ``fastcka`` in a real subprocess (stdout a pipe, stderr not a terminal)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "FASTCKA_DEBUG"}

# the CLI in a child process, then what the process's thread pools were left at
_PROBE = """
import json, sys
{pre}
from fastcka.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
import numba, threadpoolctl
blas = sorted({{p["num_threads"] for p in threadpoolctl.threadpool_info()
               if p["user_api"] == "blas"}})
print(json.dumps({{"code": code, "numba": numba.get_num_threads(),
                  "pool": numba.config.NUMBA_NUM_THREADS, "blas": blas}}))
"""


def fastcka(*args, stdin: str | None = None, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastcka", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=300, cwd=cwd, env=ENV)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Two stores of 40 paired rows (ids r0..r39) in one file: (folder, spec x, spec y, X, Y)."""
    from fastcka.store import write_store

    d = tmp_path_factory.mktemp("io")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))
    Y = X @ rng.standard_normal((6, 5)) + 0.3 * rng.standard_normal((40, 5))
    ids = np.array([f"r{i}" for i in range(40)])
    write_store(f"{d / 's.h5'}::/x", X, ids, modality="text")
    write_store(f"{d / 's.h5'}::/y", Y, ids, modality="image")
    return d, f"{d / 's.h5'}::/x", f"{d / 's.h5'}::/y", X, Y


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("numba_first", [False, True])
def test_threads_limits_numba_and_blas(stores, where, numba_first):
    import json

    d, x, y, _, _ = stores
    argv = (["--threads", "1", "cka", x, y] if where == "before"
            else ["cka", x, y, "--threads", "1"])
    pre = "import numba, numpy" if numba_first else ""
    p = subprocess.run([sys.executable, "-c", _PROBE.format(pre=pre), *argv], cwd=d, env=ENV,
                       capture_output=True, text=True, timeout=300)
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["code"] == 0, p.stderr
    assert got["numba"] == 1 and got["blas"] == [1], got
    if not numba_first:  # Numba not imported yet: its pool itself starts with one thread
        assert got["pool"] == 1, got


def test_without_threads_the_pools_keep_their_defaults(stores):
    import json

    d, x, y, _, _ = stores
    env = {k: v for k, v in ENV.items() if not k.endswith("_NUM_THREADS")}
    p = subprocess.run([sys.executable, "-c", _PROBE.format(pre=""), "cka", x, y], cwd=d,
                       env=env, capture_output=True, text=True, timeout=300)
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["code"] == 0 and got["numba"] == (os.cpu_count() or 1), (got, p.stderr)


def test_threads_is_documented_and_refuses_zero(stores):
    d, x, y, _, _ = stores
    doc = (ROOT / "docs" / "cli.md").read_text()
    assert "--threads N" in doc
    p = fastcka("--threads", "0", "cka", x, y, cwd=d)
    assert p.returncode == 2 and p.stderr.startswith("fastcka: error:") and "--threads" in p.stderr
