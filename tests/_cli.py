"""Helpers for CLI tests: run ``fastcka`` in-process and check one-line errors."""

import numpy as np
import pytest

from fastcka.cli.main import main


def run(argv, capsys):
    """Run the CLI with ``argv``; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as ei:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return ei.value.code, out, err


def assert_one_line_error(code, err, *needles):
    """Exit code 2 and exactly one ``fastcka: error:`` line (warnings may precede it)."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if "WARNING" not in ln]
    assert len(lines) == 1 and lines[0].startswith("fastcka: error: "), err
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])


def paired_stores(tmp_path):
    """Two stores of 60 paired rows (text 10-d, image 7-d, image rows shuffled, one orphan id):
    (text path, image path, X, Y, ids)."""
    from fastcka.store import write_store

    rng = np.random.default_rng(0)
    n = 60
    Z = rng.standard_normal((n, 4))
    X = np.tanh(Z @ rng.standard_normal((4, 10)))
    Y = Z @ rng.standard_normal((4, 7)) + 0.05 * rng.standard_normal((n, 7))
    ids = np.array([f"id{i:03d}" for i in range(n)])
    perm = rng.permutation(n)       # target rows stored in another order, plus an orphan id
    write_store(tmp_path / "txt.h5", X, ids, modality="text")
    write_store(tmp_path / "img.h5", np.vstack([Y[perm], np.ones((1, 7))]),
                np.append(ids[perm], "orphan"), modality="image")
    return tmp_path / "txt.h5", tmp_path / "img.h5", X, Y, ids
