"""The CLI frame: global options, exit codes, one-line errors, --debug, lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fastcka._version import __version__
from fastcka.cli.main import SUBCOMMANDS, cli, main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return ei.value.code, out, err


def _py(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=120)


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"fastcka, version {__version__}"
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and __version__ in r.stdout


def test_help_lists_available_subcommands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for name in ("import", "info", "export"):
        assert name in out
    for opt in ("--device", "--json", "--quiet", "--verbose", "--seed", "--debug"):
        assert opt in out
    code, out, _ = run(["import", "--help"], capsys)
    assert code == 0 and "--modality" in out and "--ids" in out


@pytest.mark.parametrize("argv, needle", [
    (["no-such-command"], "no-such-command"),
    (["--device", "tpu", "info", "x.h5"], "tpu"),
    (["info"], "STORE"),
    (["export", "x.h5"], "--output"),
    (["info", "x.h5", "--bogus"], "--bogus"),
])
def test_usage_errors_exit_2_one_line(capsys, argv, needle):
    code, out, err = run(argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastcka: error: ") and needle in lines[0], err
    assert "Traceback" not in err and out == ""


def test_runtime_failure_exit_1_and_debug_traceback(tmp_path, capsys, monkeypatch):
    """An unexpected exception is exit 1 with one line; --debug adds the traceback."""
    import fastcka.store

    def broken(spec):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(fastcka.store, "store_info", broken)
    code, _, err = run(["info", tmp_path / "x.h5"], capsys)
    assert code == 1
    assert err.strip() == "fastcka: error: RuntimeError: disk on fire"
    code, _, err = run(["--debug", "info", tmp_path / "x.h5"], capsys)
    assert code == 1
    assert "Traceback (most recent call last)" in err and "disk on fire" in err
    assert err.strip().splitlines()[-1] == "fastcka: error: RuntimeError: disk on fire"


def test_debug_traceback_for_bad_input(tmp_path, capsys):
    code, _, err = run(["--debug", "info", tmp_path / "absent.h5"], capsys)
    assert code == 2
    assert "Traceback (most recent call last)" in err and "StoreError" in err
    assert err.strip().splitlines()[-1].startswith("fastcka: error: store file not found")


def test_quiet_silences_warnings_and_verbose_keeps_them(tmp_path, capsys):
    X = np.ones((6, 3), dtype=np.float32)
    X[1, 1] = np.nan
    np.save(tmp_path / "x.npy", X)
    code, _, err = run(["-q", "import", tmp_path / "x.npy", "-o", tmp_path / "a.h5",
                        "--nonfinite", "drop"], capsys)
    assert code == 0 and err == ""
    code, _, err = run(["import", tmp_path / "x.npy", "-o", tmp_path / "b.h5", "--nonfinite", "drop"],
                       capsys)
    assert code == 0 and "dropped 1 row(s)" in err and len(err.strip().splitlines()) == 1


def test_global_json_and_results_on_stdout(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.ones((4, 2), dtype=np.float32))
    code, out, err = run(["--json", "import", tmp_path / "x.npy", "-o", tmp_path / "a.h5"], capsys)
    assert code == 0 and err == ""
    assert json.loads(out)["n"] == 4


def test_subcommand_modules_export_click_commands():
    import importlib
    import importlib.util

    import click

    for name in ("import", "info", "export"):
        mod, attr = SUBCOMMANDS[name]
        assert importlib.util.find_spec(mod) is not None
        cmd = getattr(importlib.import_module(mod), attr)
        assert isinstance(cmd, click.Command) and cmd.name == name


_HEAVY = "import sys; print(sorted(m for m in ('torch', 'cupy', 'transformers') if m in sys.modules))"


def test_import_fastcka_is_light(tmp_path):
    p = _py("import fastcka, fastcka.store, fastcka.backend; " + _HEAVY, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["info", "--help"], ["import", "--help"],
                                  ["--version"]])
def test_cli_help_does_not_import_torch_or_cupy(tmp_path, argv):
    code = ("import sys\nfrom fastcka.cli.main import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "sys.stdout = sys.__stdout__\n" + _HEAVY)
    p = _py(code, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"


def test_store_commands_do_not_import_torch(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((4, 2), dtype=np.float32))
    code = ("import sys\nfrom fastcka.cli.main import main\n"
            "for argv in (['import', 'x.npy', '-o', 's.h5'], ['info', 's.h5'],"
            " ['export', 's.h5', '-o', 'y.npy']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0\n"
            + _HEAVY)
    p = _py(code, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"


def test_python_dash_m_fastcka(tmp_path):
    p = subprocess.run([sys.executable, "-m", "fastcka", "--version"], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and __version__ in p.stdout
    p = subprocess.run([sys.executable, "-m", "fastcka", "--device", "tpu", "info", "x.h5"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_default_scheduler_does_not_load_the_dask_layer(tmp_path):
    """Without --scheduler no command parses one: fastcka.parallel (and Dask) stay unloaded;
    a bad --scheduler is still refused as a usage error (exit 2) before any work."""
    np.save(tmp_path / "x.npy", np.ones((4, 2), dtype=np.float32))
    code = ("import sys\nfrom fastcka.cli.main import main\n"
            "for argv in (['import', 'x.npy', '-o', 's.h5'], ['info', 's.h5']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0\n"
            "sys.stdout = sys.__stdout__\n"
            "print(sorted(m for m in ('fastcka.parallel', 'distributed', 'dask') "
            "if m in sys.modules))")
    p = _py(code, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"
    p = subprocess.run([sys.executable, "-m", "fastcka", "--scheduler", "nope", "info", "s.h5"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("fastcka: error:"), p.stderr
    assert "scheduler" in p.stderr
