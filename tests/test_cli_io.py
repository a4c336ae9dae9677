"""The batch tool in pipes and batch jobs (issue 16 items 2-5): ``--threads``, ``-`` for stdin
id files and stdout tables, ``--format``, long CSV and JSON Lines, the documented HDF5 layout.

Pipes, stdin and the thread pools are checked through real subprocesses (stdout a pipe, stderr
not a terminal, a bash pipeline); formats and error messages in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ._cli import assert_one_line_error, run

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


# ------------------------------------------------------------------------------------------
# pipes: '-' is stdin for id files and stdout for result tables
# ------------------------------------------------------------------------------------------

def _csv(text: str) -> list[dict]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


MATCH = ["--seeds", "10", "--queries", "12", "--n-init", "2"]


def test_match_table_to_stdout_carries_only_the_data(stores, capsys):
    d, x, y, _, _ = stores
    code, _, err = run(["match", x, y, *MATCH, "-o", d / "m.csv"], capsys)
    assert code == 0, err
    p = fastcka("match", x, y, *MATCH, "-o", "-", "--format", "csv", cwd=d)
    assert p.returncode == 0, p.stderr
    # stdout: exactly the table the file holds (lines end in \n on a pipe, \r\n in the file)
    assert p.stdout == (d / "m.csv").read_bytes().decode().replace("\r\n", "\n")
    assert p.stdout.splitlines()[0] == "source_id,matched_id,score,correct"
    assert len(_csv(p.stdout)) == 12
    assert "accuracy" in p.stderr  # the summary went to stderr
    # -o - alone is CSV too; with --json the document goes to stderr, stdout stays the table
    code, out, err = run(["--json", "match", x, y, *MATCH, "-o", "-"], capsys)
    assert code == 0 and out == p.stdout, err
    doc = json.loads(err.strip().splitlines()[-1])
    assert doc["command"] == "match" and doc["outputs"] == {"output": "-"}
    # -q: nothing at all on stderr
    code, out, err = run(["match", x, y, *MATCH, "-o", "-", "-q"], capsys)
    assert code == 0 and out == p.stdout and err == "", err


def test_table_formats_to_stdout_equal_the_files(stores, capsys):
    from fastcka._table import read_rows

    d, x, y, _, _ = stores
    args = ["retrieve", x, y, "--seeds", "10", "--queries", "12", "-k", "3"]
    for fmt in ("json", "jsonl", "tsv"):
        code, out, err = run([*args, "-o", "-", "--format", fmt], capsys)
        assert code == 0, err
        code, _, err = run([*args, "-o", d / f"r.{fmt}"], capsys)
        assert code == 0, err
        rows, _ = read_rows(d / f"r.{fmt}")
        if fmt == "jsonl":  # one JSON object per line, one line per query, lists kept
            got = [json.loads(ln) for ln in out.splitlines()]
            assert got == rows and len(got) == 12
            assert all(len(r["target_ids"]) == 3 and len(r["scores"]) == 3 for r in got)
            jsonl = got
        elif fmt == "json":
            assert json.loads(out)["rows"] == rows
        else:  # tsv: long, one value per cell
            lines = out.splitlines()
            assert lines[0].split("\t") == ["query_id", "rank_of_true", "matched_id", "rank",
                                            "target_id", "score"]
            assert len(lines) == 1 + 12 * 3 and len(rows) == 12 * 3
            for i, r in enumerate(rows):  # the long rows are the JSON Lines' lists, unrolled
                q = jsonl[i // 3]
                assert r["query_id"] == q["query_id"] and r["rank"] == i % 3 + 1
                assert r["target_id"] == q["target_ids"][i % 3]
                assert r["score"] == pytest.approx(q["scores"][i % 3], rel=1e-15)


def test_id_files_from_stdin_equal_the_files(stores, capsys, monkeypatch):
    d, x, y, _, _ = stores
    ids = [f"r{i}" for i in range(40)]
    (d / "seeds.txt").write_text("\n".join(ids[5:15]) + "\n")
    (d / "queries.txt").write_text("\n".join(ids[20:32]) + "\n")
    args = ["--n-init", "2", "-o", "-"]
    code, ref, err = run(["match", x, y, "--seed-ids", d / "seeds.txt", "--query-ids",
                          d / "queries.txt", *args], capsys)
    assert code == 0, err
    p = fastcka("match", x, y, "--seed-ids", "-", "--query-ids", "queries.txt", *args,
                stdin=(d / "seeds.txt").read_text(), cwd=d)
    assert p.returncode == 0 and p.stdout == ref, p.stderr
    # one standard input: two options reading it is a one-line error
    _stdin(monkeypatch, "r1\n")
    code, out, err = run(["match", x, y, "--seed-ids", "-", "--query-ids", "-", *args], capsys)
    assert_one_line_error(code, err, "standard input")
    assert out == ""


def _stdin(monkeypatch, text: str) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


def test_query_ids_and_import_ids_from_stdin(stores, capsys, monkeypatch):
    from fastcka.store import read_store

    d, x, y, _, _ = stores
    (d / "q.txt").write_text("r3\nr9\nr30\nr31\n")
    args = ["retrieve", x, y, "--seeds", "10", "-k", "2", "-o", "-", "--format", "jsonl"]
    code, ref, err = run([*args, "--query-ids", d / "q.txt"], capsys)
    assert code == 0, err
    _stdin(monkeypatch, "r3\nr9\nr30\nr31\n")
    code, out, err = run([*args, "--query-ids", "-"], capsys)
    assert code == 0 and out == ref, err
    np.save(d / "v.npy", np.arange(12.0).reshape(4, 3))
    _stdin(monkeypatch, "a\nb\nc\nd\n")
    code, _, err = run(["import", d / "v.npy", "--ids", "-", "-o", d / "v.h5"], capsys)
    assert code == 0, err
    assert read_store(d / "v.h5").ids.tolist() == ["a", "b", "c", "d"]
    _stdin(monkeypatch, "a\nb\n")
    code, _, err = run(["import", d / "v.npy", "--ids", "-", "-o", d / "w.h5"], capsys)
    assert code == 2 and "2 ids" in err and not (d / "w.h5").exists()


def test_a_shell_pipeline(stores):
    """match's table as retrieve's query ids, through a real shell pipe."""
    d, x, y, _, _ = stores
    exe = f"{sys.executable} -m fastcka"
    cmd = (f"{exe} match '{x}' '{y}' {' '.join(MATCH)} -o - | tail -n +2 | cut -d, -f1 | "
           f"{exe} retrieve '{x}' '{y}' --seeds 10 --query-ids - -k 2 -o - --format jsonl")
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                       timeout=300, cwd=d, env=ENV)
    assert p.returncode == 0, p.stderr
    m = (d / "m.csv")
    assert m.exists()  # written by test_match_table_to_stdout_carries_only_the_data, same run
    got = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert [r["query_id"] for r in got] == [r["source_id"] for r in _csv(m.read_text())]
    assert all(len(r["target_ids"]) == 2 for r in got)


@pytest.mark.parametrize("argv, needle", [
    (["-o", "-", "--format", "h5"], "standard output"),
    (["-o", "m.csv", "--format", "json"], "contradicts"),
    (["-o", "m.txt"], "--format"),
])
def test_bad_table_outputs_are_one_line_errors(stores, capsys, argv, needle):
    d, x, y, _, _ = stores
    code, out, err = run(["match", x, y, *MATCH, *argv], capsys)
    assert_one_line_error(code, err, needle)
    assert out == ""


def test_eval_refuses_stdout(stores, capsys):
    d, x, y, _, _ = stores
    code, out, err = run(["eval", x, y, "-o", "-"], capsys)
    assert_one_line_error(code, err, "stdout")


def test_h5_table_layout_is_as_documented(stores, capsys):
    """docs/cli.md's HDF5 layout, read with h5py exactly as the doc shows."""
    import h5py

    d, x, y, _, _ = stores
    doc = (ROOT / "docs" / "cli.md").read_text()
    assert "h5py" in doc and "pandas.read_hdf" in doc
    args = ["retrieve", x, y, "--seeds", "10", "--queries", "12", "-k", "3"]
    code, _, err = run([*args, "-o", d / "ranks.h5"], capsys)
    assert code == 0, err
    code, out, err = run([*args, "-o", "-", "--format", "jsonl"], capsys)
    ref = [json.loads(ln) for ln in out.splitlines()]
    with h5py.File(d / "ranks.h5") as f:
        meta = json.loads(f.attrs["meta"])
        query_id = f["query_id"].asstr()[:]         # (n,) str
        target_ids = f["target_ids"].asstr()[:]     # (n, k) str, best first
        scores = f["scores"][:]                     # (n, k) float64
        rank_of_true = f["rank_of_true"][:]         # (n,) int64, 0 = not in the top k
    for line in ('meta = json.loads(f.attrs["meta"])', 'target_ids = f["target_ids"].asstr()[:]',
                 'scores = f["scores"][:]'):
        assert line in doc, line
    assert meta["method"] == "local-cka" and meta["n_queries"] == 12
    assert query_id.tolist() == [r["query_id"] for r in ref]
    assert target_ids.shape == (12, 3) and target_ids.tolist() == [r["target_ids"] for r in ref]
    np.testing.assert_array_equal(scores, [r["scores"] for r in ref])
    assert scores.dtype == np.float64 and rank_of_true.dtype == np.int64
    assert rank_of_true.tolist() == [r["rank_of_true"] for r in ref]


def test_match_and_retrieve_share_the_local_cka_default_kernel(stores, capsys):
    """match --method local-cka and retrieve default to the same (linear) kernel: the same
    matching accuracy on the same split; FAQ keeps the paper's RBF kernels."""
    d, x, y, _, _ = stores
    split = ["--seeds", "10", "--queries", "20", "--json"]
    code, out, err = run(["match", x, y, "--method", "local-cka", *split], capsys)
    assert code == 0, err
    m = json.loads(out)
    code, out, err = run(["match", x, y, "--method", "local-cka", "--kernel", "linear", *split],
                         capsys)
    assert code == 0 and json.loads(out)["accuracy"] == m["accuracy"], err
    code, out, err = run(["retrieve", x, y, *split], capsys)
    r = json.loads(out)
    assert m["kernel"] == r["kernel"] == "linear"
    assert m["accuracy"] == r["matching_accuracy"]
    code, out, err = run(["match", x, y, *split, "--n-init", "2"], capsys)
    assert json.loads(out)["kernel"] == "rbf"
    doc = (ROOT / "docs" / "cli.md").read_text()
    assert "match --method local-cka" in doc and "paper's QAP protocol" in doc


def test_report_reads_the_long_csv_as_the_json(stores, capsys):
    """`fastcka report` reads a long retrieve CSV (and JSON Lines) as the same per-query ranks
    as the .json output."""
    from fastcka.report import read_query_result

    d, x, y, _, _ = stores
    args = ["retrieve", x, y, "--seeds", "10", "--queries", "12", "-k", "4"]
    for suffix in (".json", ".csv", ".jsonl"):
        code, _, err = run([*args, "-o", d / f"rq{suffix}"], capsys)
        assert code == 0, err
    ref = read_query_result(d / "rq.json")
    for suffix in (".csv", ".jsonl"):
        got = read_query_result(d / f"rq{suffix}")
        assert got["kind"] == "retrieve" and got["n_queries"] == ref["n_queries"] == 12
        assert got["ranks"].tolist() == ref["ranks"].tolist() and got["k_max"] == ref["k_max"]


def test_embed_text_ids_file_from_stdin(tmp_path, monkeypatch):
    """`embed text CAPTIONS.txt --ids-file -` reads the line ids from stdin (the reader the
    command calls), as from the file."""
    from fastcka.datasets import read_texts

    (tmp_path / "c.txt").write_text("a dog\na cat\n")
    (tmp_path / "ids.txt").write_text("img1.jpg\nimg2.jpg\n")
    ref = read_texts(tmp_path / "c.txt", ids_file=tmp_path / "ids.txt")
    _stdin(monkeypatch, "img1.jpg\nimg2.jpg\n")
    from fastcka._io import reset_stdin

    reset_stdin()
    got = read_texts(tmp_path / "c.txt", ids_file="-")
    assert got == ref and [r.id for r in got] == ["img1.jpg", "img2.jpg"]


def test_a_ragged_or_binary_table_is_one_line_error(tmp_path, capsys):
    """A CSV line with more or fewer fields than its header (csv.DictReader's rest key/value)
    used to end in a TypeError traceback; `fastcka report` now says which line, exit 2."""
    from fastcka._table import read_rows
    from fastcka.errors import InputError

    good = "method,kernel,n_seeds\nfaq,rbf,10\n"
    for name, text in (("long.csv", good + "faq,rbf,20,extra\n"), ("short.csv", good + "faq,rbf\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=r"line 3 does not have the header's 3 fields"):
            read_rows(tmp_path / name)
    (tmp_path / "bin.tsv").write_bytes(b"a\tb\n\xff\xfe\t1\n")
    with pytest.raises(InputError, match="not a TSV table"):
        read_rows(tmp_path / "bin.tsv")
    assert read_rows(_write(tmp_path / "ok.csv", good))[0] == [
        {"method": "faq", "kernel": "rbf", "n_seeds": 10}]
    code, out, err = run(["report", str(tmp_path / "long.csv"), "-o", str(tmp_path / "rep")], capsys)
    assert code == 2 and "line 3" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "rep").exists()


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path
