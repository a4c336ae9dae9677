"""Progress where batch users look (issue 16 item 1): log lines when stderr is not a terminal,
nothing with -q, a note when Numba compiles its kernels on a first run."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from fastcka._progress import LineProgress

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_line_progress_every_interval_and_every_tenth():
    clock, out = Clock(), io.StringIO()
    bar = LineProgress(total=1000, desc="embed images", unit="img", interval=30, clock=clock,
                       stream=out)
    for _ in range(99):  # 99 items in 9.9 s: under 10 %, under 30 s -> nothing yet
        clock.t += 0.1
        bar.update(1)
    assert out.getvalue() == ""
    clock.t += 0.1
    bar.update(1)  # 10 % after 10 s (>= 30/6 s since the start): one line
    assert out.getvalue().splitlines() == [
        "fastcka: embed images: 100/1000 (10%), 10 img/s, ETA 1m30s"]
    clock.t += 31  # 30 s later, even without another 10 %
    bar.update(1)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("fastcka: embed images: 101/1000 (10%), 2.46 img/s, ETA 6m")
    bar.update(899)
    bar.close()
    assert out.getvalue().splitlines()[-1] == "fastcka: embed images: done 1000/1000 img in 41s " \
                                              "(24.4 img/s)"


def test_line_progress_quiet_for_short_steps_and_unknown_totals():
    clock, out = Clock(), io.StringIO()
    for _x in LineProgress(range(50), desc="fast", interval=30, clock=clock, stream=out):
        clock.t += 0.01  # 0.5 s in all: nothing, not even "done"
    assert out.getvalue() == ""
    bar = LineProgress(desc="stream", unit="block", interval=30, clock=clock, stream=out)
    clock.t += 40
    bar.update(4)
    assert out.getvalue().strip() == "fastcka: stream: 4 block, 0.1 block/s"


def _fastcka(*args, cwd, **env):
    e = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    e.pop("FASTCKA_DEBUG", None)
    # stderr is a pipe, not a terminal, as in a SLURM job's log
    return subprocess.run([sys.executable, "-m", "fastcka", *map(str, args)], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=300)


def _stores(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5))
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", X @ rng.standard_normal((5, 4)) + rng.standard_normal((60, 4)))
    for n in ("x", "y"):
        assert _fastcka("import", f"{n}.npy", "-o", f"{n}.h5", cwd=tmp_path).returncode == 0


LINE = re.compile(r"^fastcka: permutations: (\d+)/300 \(\d+%\), [\d.]+ perm/s, ETA \d+")


def test_progress_lines_in_a_batch_log_and_quiet(tmp_path):
    _stores(tmp_path)
    p = _fastcka("cka", "x.h5", "y.h5", "--permutations", "300", cwd=tmp_path,
                 FASTCKA_PROGRESS_INTERVAL="0")
    assert p.returncode == 0, p.stderr
    lines = p.stderr.strip().splitlines()
    steps = [int(m.group(1)) for m in map(LINE.match, lines) if m]
    assert steps == sorted(steps) and len(steps) >= 10 and steps[-1] <= 300, p.stderr
    assert lines[-1].startswith("fastcka: permutations: done 300/300 perm in "), p.stderr
    assert "\r" not in p.stderr  # no bar redrawn into the log
    assert "p = " in p.stdout
    for argv in (["-q", "cka", "x.h5", "y.h5", "--permutations", "300"],
                 ["cka", "x.h5", "y.h5", "--permutations", "300", "-q"]):
        q = _fastcka(*argv, cwd=tmp_path, FASTCKA_PROGRESS_INTERVAL="0")
        assert q.returncode == 0 and q.stderr == "", q.stderr
        assert q.stdout == p.stdout  # the same result, without the log
    # the default interval (30 s) keeps a short run's log empty
    d = _fastcka("cka", "x.h5", "y.h5", "--permutations", "300", cwd=tmp_path)
    assert d.returncode == 0 and d.stderr == "", d.stderr


def test_faq_restarts_and_streamed_retrieval_progress(capsys, monkeypatch):
    """The library's long loops report through the same module (stderr is captured: no tty)."""
    import fastcka
    from fastcka._progress import set_progress
    from fastcka.retrieval import retrieve

    monkeypatch.setenv("FASTCKA_PROGRESS_INTERVAL", "0")
    set_progress(None)
    rng = np.random.default_rng(1)
    A = rng.random((12, 12))
    B = rng.random((12, 12))
    res = fastcka.quadratic_assignment(A, B, options={"n_init": 12, "batch_size": 4, "rng": np.random.default_rng(0)})
    want = fastcka.quadratic_assignment(A, B, options={"n_init": 12, "rng": np.random.default_rng(0)})
    assert res.fun == want.fun  # progress changes nothing
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [ln for ln in err[:2] if ln.startswith("fastcka: FAQ restarts: ")]
    assert err[0].startswith("fastcka: FAQ restarts: 4/12 (33%)")
    assert err[-1].startswith("fastcka: FAQ restarts: done 12/12 restart in")
    S, T = rng.standard_normal((30, 4)), rng.standard_normal((30, 3))
    retrieve((S[:20], T[:20], S[20:], T[20:]), k=3, method="linreg", block=8)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("fastcka: retrieval blocks: 1/3 (33%)"), err
    set_progress(False)
    fastcka.quadratic_assignment(A, B, options={"n_init": 12, "batch_size": 4, "rng": np.random.default_rng(0)})
    assert capsys.readouterr().err == ""
    set_progress(None)


_NOTE = ("import sys\nfrom fastcka._progress import note_numba_compile, set_progress\n"
         "set_progress(None)\nprint(note_numba_compile(), note_numba_compile())\n")


def test_numba_first_run_note(tmp_path):
    empty = tmp_path / "cache"
    empty.mkdir()
    e = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(empty)}
    p = subprocess.run([sys.executable, "-c", _NOTE], env=e, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "False"]  # said once
    assert p.stderr.count("Numba compiles the CPU kernels") == 1 and str(empty) in p.stderr
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    (empty / "some_path").mkdir()
    (empty / "some_path" / f"cka_cpu._tile_sums_nb-356.{tag}.nbi").write_bytes(b"")
    p = subprocess.run([sys.executable, "-c", _NOTE], env=e, capture_output=True, text=True,
                       timeout=120)
    assert p.stdout.split() == ["False", "False"] and p.stderr == ""
