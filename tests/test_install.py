"""Both install kinds resolve ``fastcka.kernels`` and ``fastcka.cli`` to the right files.

``kernels/`` and ``cli/`` sit at the top of the repository but must install as sub-packages of
``fastcka`` (never as top-level ``kernels``/``cli``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_PROBE = (
    "import json, fastcka, fastcka.kernels, fastcka.cli, fastcka.cli.main, fastcka.encoders\n"
    "print(json.dumps({'fastcka': fastcka.__file__, 'kernels': fastcka.kernels.__file__,\n"
    "                  'cli': fastcka.cli.__file__, 'main': fastcka.cli.main.__file__,\n"
    "                  'encoders': fastcka.encoders.__file__}))\n"
)

_SKIP_COPY = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "dist",
                                    ".pytest_cache", ".ruff_cache", "*.h5", "demo-output", "results")


def _probe(cwd: Path, env: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", _PROBE], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return {k: Path(v).resolve() for k, v in json.loads(p.stdout.strip().splitlines()[-1]).items()}


def _clean_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def test_non_editable_install_places_subpackages_under_fastcka(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_SKIP_COPY)  # builds never touch the working tree
    target = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--no-compile", "--target", str(target), str(src)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    if p.returncode != 0 and "No module named pip" in p.stderr:
        pytest.skip("pip is not available in this environment")
    assert p.returncode == 0, p.stderr[-2000:]
    assert not (target / "kernels").exists(), "kernels/ must not install as a top-level package"
    assert not (target / "cli").exists(), "cli/ must not install as a top-level package"
    assert (target / "fastcka" / "kernels" / "__init__.py").is_file()
    assert (target / "fastcka" / "cli" / "import_.py").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**_clean_env(), "PYTHONPATH": str(target)}
    files = _probe(elsewhere, env)
    for key, f in files.items():
        assert f.is_relative_to(target.resolve()), (key, f)
        assert not f.is_relative_to(ROOT), (key, f)
    assert files["kernels"] == target.resolve() / "fastcka" / "kernels" / "__init__.py"
    assert files["main"] == target.resolve() / "fastcka" / "cli" / "main.py"
    ep = [d for d in target.glob("fastcka-*.dist-info")]
    assert len(ep) == 1
    assert "fastcka = fastcka.cli.main:main" in (ep[0] / "entry_points.txt").read_text()
    p = subprocess.run([sys.executable, "-m", "fastcka", "--version"], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "fastcka, version" in p.stdout


def _is_editable_install() -> tuple[bool, str]:
    try:
        dist = metadata.distribution("fastcka")
    except metadata.PackageNotFoundError:
        return False, "fastcka is not installed in this environment (run `make setup`)"
    raw = dist.read_text("direct_url.json")
    if not raw:
        return False, "fastcka is installed, but not from a local folder"
    info = json.loads(raw)
    if not info.get("dir_info", {}).get("editable"):
        return False, "fastcka is installed non-editable here (the Makefile uses `pip install -e`)"
    return True, ""


def test_editable_install_resolves_to_the_repository(tmp_path):
    ok, why = _is_editable_install()
    if not ok:
        pytest.skip(why)
    files = _probe(tmp_path, _clean_env())  # a neutral cwd, no PYTHONPATH
    assert files["fastcka"] == ROOT / "fastcka" / "__init__.py"
    assert files["kernels"] == ROOT / "kernels" / "__init__.py"
    assert files["cli"] == ROOT / "cli" / "__init__.py"
    assert files["main"] == ROOT / "cli" / "main.py"
    assert files["encoders"] == ROOT / "fastcka" / "encoders" / "__init__.py"
    p = subprocess.run([sys.executable, "-c", "import kernels"], cwd=tmp_path, env=_clean_env(),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, "a top-level `kernels` package must not be importable"
    script = Path(sys.executable).with_name("fastcka")
    if script.exists():
        p = subprocess.run([str(script), "--version"], cwd=tmp_path, env=_clean_env(),
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0 and "fastcka, version" in p.stdout
