"""A wheel built from the working tree installs in a fresh venv and its CLI works there
(issue 16 item 6 and "Done when"): LICENSE and py.typed ship, no Makefile is needed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_SKIP = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "dist",
                               ".pytest_cache", ".ruff_cache", "*.h5", "demo-output", "results")


def test_wheel_installs_in_a_fresh_venv_and_runs(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_SKIP)
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("fastcka-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastcka/py.typed" in names
    lic = [n for n in names if n.endswith("licenses/LICENSE")]
    assert lic and "BSD 3-Clause" in zipfile.ZipFile(wheel).read(lic[0]).decode()
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: BSD-3-Clause" in meta
    # a fresh venv; its dependencies come from this environment's site-packages (offline),
    # through a plain path entry that does not run this environment's editable-install hook
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    vpy = venv / "bin" / "python"
    site = Path(subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)  # a wheel install is an unpack (+ scripts), done by hand: no pip here
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTCKA_DEBUG")}
    work = tmp_path / "work"
    work.mkdir()

    def fastcka(*args):
        return subprocess.run([str(vpy), "-m", "fastcka", *map(str, args)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)

    where = subprocess.run([str(vpy), "-c", "import fastcka; print(fastcka.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    h = fastcka("--help")
    assert h.returncode == 0 and "Examples:" in h.stdout, h.stderr
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    np.save(work / "x.npy", X)
    np.save(work / "y.npy", X @ rng.standard_normal((5, 4)))
    for n in ("x", "y"):
        assert fastcka("import", f"{n}.npy", "-o", f"s.h5::/{n}").returncode == 0
    i = fastcka("info", "s.h5::/x")
    assert i.returncode == 0 and "rows (n)" in i.stdout and "40" in i.stdout, i.stderr
    m = fastcka("match", "s.h5::/x", "s.h5::/y", "--seeds", "10", "--queries", "10",
                "--n-init", "2", "-o", "m.csv")
    assert m.returncode == 0, m.stderr
    rows = (work / "m.csv").read_text().splitlines()
    assert rows[0] == "source_id,matched_id,score,correct" and len(rows) == 11
