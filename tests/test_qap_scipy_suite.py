"""SciPy's own test file for ``quadratic_assignment``, run against fastcka's implementation.

The file shipped with SciPy (``scipy/optimize/tests/test_quadratic_assignment.py``) is read, the
line importing ``quadratic_assignment`` and ``OptimizeWarning`` from ``scipy.optimize`` is
redirected to ``fastcka.qap`` (nothing else changes: SciPy's private ``_calc_score`` helper is still
SciPy's), written to a temporary directory and run with pytest in a subprocess.  Every test
must pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

scipy = pytest.importorskip("scipy")

SCIPY_TEST = Path(scipy.__file__).parent / "optimize" / "tests" / "test_quadratic_assignment.py"
IMPORT_RE = re.compile(r"^from scipy\.optimize import (quadratic_assignment, OptimizeWarning|"
                       r"OptimizeWarning, quadratic_assignment)\s*$", re.M)


def _redirected_source() -> str:
    src = SCIPY_TEST.read_text()
    new, count = IMPORT_RE.subn("from fastcka.qap import quadratic_assignment, OptimizeWarning", src)
    assert count == 1, "SciPy's test file no longer imports quadratic_assignment as expected"
    assert "fastcka.qap" in new and "scipy.optimize import quadratic_assignment" not in new
    return new


@pytest.mark.skipif(not SCIPY_TEST.exists(), reason=f"SciPy's QAP test file is absent: {SCIPY_TEST}")
def test_scipy_quadratic_assignment_suite_passes(tmp_path):
    target = tmp_path / "test_scipy_qap_redirected.py"
    target.write_text(_redirected_source())
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-c", os.devnull, str(target)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    m = re.search(r"(\d+) passed", out)
    assert m and int(m.group(1)) >= 10, out[-2000:]
    assert not re.search(r"\d+ (failed|error)", out), out[-2000:]


@pytest.mark.skipif(not SCIPY_TEST.exists(), reason=f"SciPy's QAP test file is absent: {SCIPY_TEST}")
def test_redirection_really_targets_fastcka(tmp_path, monkeypatch):
    """The redirected module's quadratic_assignment is ours, not SciPy's."""
    import importlib.util

    target = tmp_path / "redirected_mod.py"
    target.write_text(_redirected_source())
    spec = importlib.util.spec_from_file_location("redirected_mod", target)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import fastcka.qap

    assert mod.quadratic_assignment is fastcka.qap.quadratic_assignment
