"""Conventions every subcommand shares (issue 16): one --json schema, -q/-v/--debug after the
subcommand, usage help for a bare group, examples at the end of every --help."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastcka._version import __version__
from fastcka.cli._common import HEADER_KEYS, dumps
from fastcka.cli.main import SUBCOMMANDS, cli

from ._cli import run


def _strict(text: str):
    """json.loads that refuses NaN/Infinity (they are not JSON)."""
    def bad(c):
        raise ValueError(f"non-JSON constant {c}")
    return json.loads(text, parse_constant=bad)


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    Y = (X @ rng.standard_normal((6, 5)) + 0.3 * rng.standard_normal((40, 5))).astype(np.float32)
    ids = [f"r{i}" for i in range(40)]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    return tmp_path, X, Y


def _store(capsys, tmp_path, name):
    spec = f"{tmp_path / 's.h5'}::/{name}"
    code, _, err = run(["import", tmp_path / f"{name}.npy", "--ids", tmp_path / "ids.txt",
                        "-o", spec], capsys)
    assert code == 0, err
    return spec


def test_every_subcommand_json_has_the_same_header(pair, capsys):
    tmp, X, Y = pair
    a, b = _store(capsys, tmp, "x"), _store(capsys, tmp, "y")
    calls = {
        "import": ["import", tmp / "x.npy", "-o", tmp / "other.h5"],
        "info": ["info", a],
        "export": ["export", a, "-o", tmp / "e.npy"],
        "cka": ["cka", a, b],
        "match": ["match", a, b, "--seeds", "10", "--queries", "12", "--n-init", "2"],
        "retrieve": ["retrieve", a, b, "--seeds", "10", "--queries", "12"],
    }
    for name, argv in calls.items():
        code, out, err = run(["--json", *argv], capsys)
        assert code == 0, (name, err)
        doc = _strict(out)
        assert list(doc)[:len(HEADER_KEYS)] == list(HEADER_KEYS), (name, list(doc))
        assert doc["command"] == name and doc["version"] == __version__
        assert doc["device"] == "cpu", name  # auto resolved: no GPU here
        assert isinstance(doc["seconds"], float) and doc["seconds"] >= 0
        assert isinstance(doc["inputs"], dict) and isinstance(doc["outputs"], dict)
    # the results follow the header: the value is the library's
    import fastcka

    code, out, _ = run(["--json", "cka", a, b], capsys)
    assert _strict(out)["value"] == pytest.approx(fastcka.cka(X.astype(np.float64),
                                                              Y.astype(np.float64)), abs=1e-6)
    assert _strict(out)["inputs"] == {"stores": [a, b]}


def test_nan_results_are_null(pair, capsys):
    tmp, X, _ = pair
    np.save(tmp / "c.npy", np.ones_like(X))  # a constant representation: CKA is NaN
    a, c = _store(capsys, tmp, "x"), _store(capsys, tmp, "c")
    code, out, err = run(["--json", "cka", a, c], capsys)
    assert code == 0, err
    assert "NaN" not in out and _strict(out)["value"] is None
    assert dumps({"a": float("nan"), "b": [np.float32("inf"), np.int64(3)]}) == \
        '{"a": null, "b": [null, 3]}'


def test_quiet_verbose_debug_after_the_subcommand(tmp_path, capsys):
    X = np.ones((6, 3), dtype=np.float32)
    X[1, 1] = np.nan
    np.save(tmp_path / "x.npy", X)
    code, _, err = run(["import", tmp_path / "x.npy", "-o", tmp_path / "a.h5", "--nonfinite",
                        "drop", "-q"], capsys)
    assert code == 0 and err == ""
    code, _, err = run(["import", tmp_path / "x.npy", "-o", tmp_path / "b.h5", "--nonfinite",
                        "drop"], capsys)
    assert code == 0 and "dropped 1 row(s)" in err
    code, _, err = run(["info", tmp_path / "a.h5", "-v"], capsys)
    assert code == 0
    code, _, err = run(["info", tmp_path / "absent.h5", "--debug"], capsys)
    assert code == 2 and "Traceback (most recent call last)" in err


@pytest.mark.parametrize("argv", [[], ["embed"]])
def test_bare_group_prints_usage_help(capsys, argv):
    code, out, err = run(argv, capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("Usage: fastcka") and len(lines) > 10
    assert "Commands:" in out and "Examples:" in out


def _all_commands():
    import click

    ctx = click.Context(cli)
    for name in SUBCOMMANDS:
        cmd = cli.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield [name]
            for sub in cmd.commands:
                yield [name, sub]
        elif cmd is not None:
            yield [name]


@pytest.mark.parametrize("argv", [[]] + list(_all_commands()), ids=lambda a: " ".join(a) or "root")
def test_help_ends_with_examples(capsys, argv):
    code, out, _ = run([*argv, "--help"], capsys)
    assert code == 0
    tail = out.rstrip().split("Examples:")
    assert len(tail) == 2, out
    examples = [ln.strip() for ln in tail[1].strip().splitlines()]
    assert 1 <= len(examples) <= 3 and all(e.startswith("fastcka ") for e in examples), examples
    if argv:  # each example runs this very subcommand
        assert all(" ".join(argv) in e for e in examples), examples


def test_documented_shell_completion_works(tmp_path):
    """docs/cli.md's completion line gives a script, and completing `fastcka ma` offers match."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "cli.md").read_text()
    assert 'eval "$(_FASTCKA_COMPLETE=bash_source fastcka)"' in doc
    assert "NUMBA_NUM_THREADS" in doc and "OMP_NUM_THREADS" in doc
    env = {**os.environ, "PYTHONPATH": str(root), "_FASTCKA_COMPLETE": "bash_source"}
    code = "import sys; sys.argv[0] = 'fastcka'; from fastcka.cli.main import main; main()"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert "_fastcka_completion()" in p.stdout, p.stderr
    env.update(_FASTCKA_COMPLETE="bash_complete", COMP_WORDS="fastcka ma", COMP_CWORD="1")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert "plain,match" in p.stdout.splitlines(), p.stdout + p.stderr


def test_cka_table_keeps_whole_store_names(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4))
    specs = []
    for k, name in enumerate(("efficientnet_lite0_images", "minilm_l6_captions", "e5_small_de")):
        np.save(tmp_path / f"{k}.npy", X + (k + 1) * rng.standard_normal((30, 4)))
        spec = f"{tmp_path / 'e.h5'}::/{name}"
        assert run(["import", tmp_path / f"{k}.npy", "-o", spec], capsys)[0] == 0
        specs.append(spec)
    code, out, err = run(["cka", *specs], capsys)
    assert code == 0, err
    header = out.splitlines()[1].split()
    assert header == ["e::efficientnet_lite0_images", "e::minilm_l6_captions", "e::e5_small_de"]
    M = np.array([[float(v) for v in ln.split()[1:]] for ln in out.splitlines()[2:]])
    assert np.allclose(np.diag(M), 1.0) and np.allclose(M, M.T)


def test_info_on_a_file_with_several_sets_lists_them(tmp_path, capsys):
    from fastcka.store import write_store

    rng = np.random.default_rng(0)
    write_store(f"{tmp_path / 'm.h5'}::/image", rng.standard_normal((7, 3)), None, modality="image")
    write_store(f"{tmp_path / 'm.h5'}::/text", rng.standard_normal((7, 5)), None, modality="text")
    code, out, err = run(["info", tmp_path / "m.h5"], capsys)
    assert code == 0, err
    assert out.startswith(f"{tmp_path / 'm.h5'}: 2 embedding sets")
    assert f"{tmp_path / 'm.h5'}::/image" in out and f"{tmp_path / 'm.h5'}::/text" in out
    code, out, _ = run(["--json", "info", tmp_path / "m.h5"], capsys)
    doc = _strict(out)
    assert doc["groups"] == ["/image", "/text"]
    assert [(s["n"], s["dim"], s["modality"]) for s in doc["sets"]] == [(7, 3, "image"),
                                                                        (7, 5, "text")]
