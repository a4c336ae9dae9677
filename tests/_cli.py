"""Helpers for CLI tests: run ``fastcka`` in-process and check one-line errors."""

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
