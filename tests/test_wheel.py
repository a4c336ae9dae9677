"""Packaging (issue 16 item 6 and "Done when"): a wheel built from a clean clone installs with pip
in a fresh venv, and there, without the Makefile, `fastcka --help`, `fastcka info` and
`fastcka match -o - --format csv` work; LICENSE, py.typed and the project URLs ship; the sdist
holds everything the tests need (MANIFEST.in's rule: every tracked file but bench/)."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_SKIP = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "dist",
                               ".pytest_cache", ".ruff_cache", "*.h5", "demo-output", "results")


def _clean_clone(dest: Path) -> list[str]:
    """The committed tree in ``dest`` (a git clone; a plain copy where there is no git, e.g. in
    an unpacked sdist); returns its files (tracked files where git is there)."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True, timeout=300,
                       capture_output=True)
        return subprocess.run(["git", "ls-files"], cwd=dest, check=True, capture_output=True,
                              text=True).stdout.split()
    shutil.copytree(ROOT, dest, ignore=_SKIP)
    return [str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()]


def test_sdist_holds_what_the_tests_need(tmp_path):
    src = tmp_path / "src"
    tracked = _clean_clone(src)
    p = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                        "print(build_meta.build_sdist(sys.argv[1]))", str(tmp_path / "dist")],
                       cwd=src, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (sdist,) = (tmp_path / "dist").glob("fastcka-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {m.name.split("/", 1)[1] for m in t.getmembers() if m.isfile()}
    need = {f for f in tracked if not f.startswith("bench/") and f != ".gitignore"}
    assert need - names == set(), "tracked files missing from the sdist"
    # the helpers and documents the tests read, by name
    for f in ("tests/conftest.py", "tests/_cli.py", "tests/_tiny_models.py",
              "docs/cli.md", "docs/hpc.md", "README.md", "LICENSE", ".ci/slurm.sh", "Makefile"):
        assert f in names, f
    extra = {n for n in names - set(tracked) if not n.startswith("fastcka.egg-info/")}
    assert extra <= {"PKG-INFO", "setup.cfg"}, extra  # nothing untracked, no bench/
    assert not any(n.startswith("bench/") for n in names)


def test_wheel_installs_in_a_fresh_venv_and_runs(tmp_path):
    src = tmp_path / "src"
    _clean_clone(src)
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("fastcka-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastcka/py.typed" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    lic = [n for n in names if n.endswith("licenses/LICENSE")]
    assert lic and "BSD 3-Clause" in zipfile.ZipFile(wheel).read(lic[0]).decode()
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: BSD-3-Clause" in meta
    assert "Project-URL: Paper, https://arxiv.org/abs/2401.05224" in meta
    # a fresh venv without pip; this environment's pip installs the wheel into it (offline,
    # no dependencies) and its dependencies come from this environment's site-packages through
    # a plain path entry, which does not run this environment's editable-install hook
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    vpy = venv / "bin" / "python"
    p = subprocess.run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "-q",
                        "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    site = Path(subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTCKA_DEBUG")}
    work = tmp_path / "work"   # no Makefile, no checkout here
    work.mkdir()

    def fastcka(*args):  # the console script pip installed
        return subprocess.run([str(venv / "bin" / "fastcka"), *map(str, args)], cwd=work,
                              env=env, capture_output=True, text=True, timeout=300)

    where = subprocess.run([str(vpy), "-c", "import fastcka; print(fastcka.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    h = fastcka("--help")
    assert h.returncode == 0 and "Examples:" in h.stdout and "--threads" in h.stdout, h.stderr
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    np.save(work / "x.npy", X)
    np.save(work / "y.npy", X @ rng.standard_normal((5, 4)))
    for n in ("x", "y"):
        assert fastcka("import", f"{n}.npy", "-o", f"s.h5::/{n}").returncode == 0
    i = fastcka("info", "s.h5::/x")
    assert i.returncode == 0 and "rows (n)" in i.stdout and "40" in i.stdout, i.stderr
    m = fastcka("match", "s.h5::/x", "s.h5::/y", "--seeds", "10", "--queries", "10",
                "--n-init", "2", "-o", "-", "--format", "csv")
    assert m.returncode == 0, m.stderr
    rows = list(csv.DictReader(io.StringIO(m.stdout)))
    assert m.stdout.splitlines()[0] == "source_id,matched_id,score,correct" and len(rows) == 10
    assert {r["correct"] for r in rows} <= {"True", "False"} and "accuracy" in m.stderr
