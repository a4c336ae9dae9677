"""``fastcka import / info / export`` through CliRunner, main() and a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fastcka.cli.main import cli, main
from fastcka.store import read_store, store_info, write_store

ROOT = Path(__file__).resolve().parents[1]


def run(argv, capsys):
    """main(argv) in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as ei:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return ei.value.code, out, err


def assert_one_line_error(code, err, *needles, expected=2):
    assert code == expected, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastcka: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])


def _data(n=12, d=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# ----------------------------------------------------------------------------- import sources

def test_import_npy_with_ids_file_and_metadata(tmp_path):
    X = _data()
    np.save(tmp_path / "x.npy", X)
    ids = [f"img_{i}.jpg" for i in range(12)]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n\n")  # trailing blank lines are fine
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.h5"),
                                 "--ids", str(tmp_path / "ids.txt"), "--modality", "image",
                                 "--encoder", "effnet", "--name", "my set"])
    assert r.exit_code == 0, r.output
    assert "wrote 12 x 5 float32" in r.stdout
    es = read_store(tmp_path / "s.h5")
    assert es.X.tobytes() == X.tobytes() and es.ids.tolist() == ids
    assert (es.modality, es.encoder, es.attrs["name"]) == ("image", "effnet", "my set")
    assert es.settings["source"] == "x.npy"


def test_import_ids_file_is_per_row_so_hash_lines_are_ids(tmp_path):
    """import --ids reads with the one id-file rule for per-row files: '#' is part of an id."""
    X = _data()
    np.save(tmp_path / "x.npy", X)
    ids = ["#0"] + [f" r{i} " for i in range(1, 12)]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.h5"),
                                 "--ids", str(tmp_path / "ids.txt")])
    assert r.exit_code == 0, r.output
    assert read_store(tmp_path / "s.h5").ids.tolist() == [i.strip() for i in ids]


def test_import_row_numbers_and_float16(tmp_path):
    X = _data().astype(np.float16)
    np.save(tmp_path / "x.npy", X)
    r = CliRunner().invoke(cli, ["--json", "import", str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.h5")])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["ids_from"] == "row numbers" and res["dtype"] == "float16"
    es = read_store(tmp_path / "s.h5")
    assert es.ids.tolist() == [str(i) for i in range(12)] and es.X.tobytes() == X.tobytes()


def test_import_npz_named_array_and_ids(tmp_path):
    X, Y = _data(seed=1), _data(d=3, seed=2)
    ids = np.array([f"k{i}" for i in range(12)])
    np.savez(tmp_path / "z.npz", img=X, txt=Y, ids=ids)
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "z.npz"), "--array", "txt",
                                 "-o", str(tmp_path / "s.h5")])
    assert r.exit_code == 0, r.output
    es = read_store(tmp_path / "s.h5")
    assert es.X.tobytes() == Y.tobytes() and es.ids.tolist() == ids.tolist()
    assert es.settings["array"] == "txt"
    np.savez(tmp_path / "one.npz", only=X)
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "one.npz"), "-o", str(tmp_path / "o.h5")])
    assert r.exit_code == 0 and read_store(tmp_path / "o.h5").X.tobytes() == X.tobytes()


def test_import_npz_ambiguous_lists_names(tmp_path, capsys):
    np.savez(tmp_path / "z.npz", alpha=_data(), beta=_data())
    code, _, err = run(["import", tmp_path / "z.npz", "-o", tmp_path / "s.h5"], capsys)
    assert_one_line_error(code, err, "alpha", "beta", "--array")
    code, _, err = run(["import", tmp_path / "z.npz", "--array", "gamma", "-o", tmp_path / "s.h5"], capsys)
    assert_one_line_error(code, err, "gamma", "alpha")
    assert not (tmp_path / "s.h5").exists()


def test_import_csv_header_with_id_column(tmp_path):
    X = _data(n=4, d=3)
    lines = ["f1,id,f2,f3"] + [f"{r[0]!r},row{i},{r[1]!r},{r[2]!r}" for i, r in
                                 enumerate(X.astype(float).tolist())]
    (tmp_path / "e.csv").write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "e.csv"), "-o", str(tmp_path / "s.h5")])
    assert r.exit_code == 0, r.output
    es = read_store(tmp_path / "s.h5")
    assert es.ids.tolist() == ["row0", "row1", "row2", "row3"]
    assert es.X.tobytes() == X.tobytes()  # float32 -> repr -> float64 -> float32 is exact
    assert es.settings["columns"] == ["f1", "f2", "f3"]


def test_import_tsv_without_header(tmp_path):
    X = _data(n=5, d=4)
    (tmp_path / "e.tsv").write_text("\n".join("\t".join(repr(v) for v in row)
                                              for row in X.astype(float).tolist()))
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "e.tsv"), "-o", str(tmp_path / "s.h5")])
    assert r.exit_code == 0, r.output
    es = read_store(tmp_path / "s.h5")
    assert es.X.tobytes() == X.tobytes() and es.ids.tolist() == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("text, needles", [
    ("a,b\n1,2\n3,x\n", ["line 3", "'x'", "not a number"]),
    ("1,2\n3\n", ["line 2", "1 fields, expected 2"]),
    ("id\nr1\n", ["no numeric columns"]),
    ("", ["empty"]),
])
def test_import_csv_errors(tmp_path, capsys, text, needles):
    (tmp_path / "e.csv").write_text(text)
    code, _, err = run(["import", tmp_path / "e.csv", "-o", tmp_path / "s.h5"], capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "s.h5").exists()


def test_import_pt_tensor_and_dict(tmp_path):
    torch = pytest.importorskip("torch")
    X = _data()
    torch.save(torch.from_numpy(X), tmp_path / "t.pt")
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "t.pt"), "-o", str(tmp_path / "a.h5")])
    assert r.exit_code == 0, r.output
    assert read_store(tmp_path / "a.h5").X.tobytes() == X.tobytes()
    torch.save({"emb": torch.from_numpy(X), "ids": [f"q{i}" for i in range(12)]}, tmp_path / "d.pt")
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "d.pt"), "-o", str(tmp_path / "b.h5")])
    assert r.exit_code == 0, r.output
    es = read_store(tmp_path / "b.h5")
    assert es.ids.tolist() == [f"q{i}" for i in range(12)] and es.X.tobytes() == X.tobytes()


def test_import_pt_without_torch_is_one_line_error(tmp_path, capsys, monkeypatch):
    (tmp_path / "t.pt").write_bytes(b"not really a torch file")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    code, _, err = run(["import", tmp_path / "t.pt", "-o", tmp_path / "s.h5"], capsys)
    assert_one_line_error(code, err, "needs torch", "not installed")


@pytest.mark.parametrize("case, needles", [
    ("ids_count", ["ids file", "3 ids", "12 rows"]),
    ("ids_dup", ["unique", "'a'"]),
    ("ids_blank", ["blank line", "line 2"]),
    ("nan", ["1 row(s)", "NaN or Inf", "'4'"]),
    ("one_d", ["2-D"]),
    ("suffix", ["unknown suffix", ".txt"]),
    ("modality", ["--modality", "audio"]),
    ("missing_src", ["does not exist"]),
    ("bad_npy", ["cannot read"]),
    ("group_twice", ["either"]),
    ("array_on_npy", ["--array"]),
])
def test_import_bad_input_exit_2(tmp_path, capsys, case, needles):
    X = _data()
    src = tmp_path / "x.npy"
    np.save(src, X)
    out = tmp_path / "s.h5"
    extra = []
    if case == "ids_count":
        (tmp_path / "ids.txt").write_text("a\nb\nc\n")
        extra = ["--ids", tmp_path / "ids.txt"]
    elif case == "ids_dup":
        (tmp_path / "ids.txt").write_text("a\n" * 12)
        extra = ["--ids", tmp_path / "ids.txt"]
    elif case == "ids_blank":
        (tmp_path / "ids.txt").write_text("a\n\nc\n")
        extra = ["--ids", tmp_path / "ids.txt"]
    elif case == "nan":
        X[4, 2] = np.nan
        np.save(src, X)
    elif case == "one_d":
        np.save(src, X[0])
    elif case == "suffix":
        src = tmp_path / "x.txt"
        src.write_text("1 2 3")
    elif case == "modality":
        extra = ["--modality", "audio"]
    elif case == "missing_src":
        src = tmp_path / "absent.npy"
    elif case == "bad_npy":
        src.write_bytes(b"garbage")
    elif case == "group_twice":
        out = f"{out}::/a"
        extra = ["--group", "b"]
    elif case == "array_on_npy":
        extra = ["--array", "x"]
    code, stdout, err = run(["import", src, "-o", out, *extra], capsys)
    assert_one_line_error(code, err, *needles)
    assert stdout == ""
    assert not (tmp_path / "s.h5").exists()


def test_import_nonfinite_drop_warns(tmp_path, capsys):
    X = _data()
    X[[2, 9], 0] = np.inf
    np.save(tmp_path / "x.npy", X)
    code, out, err = run(["import", tmp_path / "x.npy", "-o", tmp_path / "s.h5", "--nonfinite",
                          "drop", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["dropped"] == 2
    assert "dropped 2 row(s)" in err and "'2'" in err and "'9'" in err and len(err.strip().splitlines()) == 1
    assert read_store(tmp_path / "s.h5").ids.tolist() == [str(i) for i in range(12) if i not in (2, 9)]


def test_import_groups_into_one_file(tmp_path):
    np.save(tmp_path / "a.npy", _data(seed=1))
    np.save(tmp_path / "b.npy", _data(d=3, seed=2))
    f = tmp_path / "m.h5"
    r1 = CliRunner().invoke(cli, ["import", str(tmp_path / "a.npy"), "-o", str(f), "--group", "img"])
    r2 = CliRunner().invoke(cli, ["import", str(tmp_path / "b.npy"), "-o", f"{f}::/txt"])
    assert r1.exit_code == 0 and r2.exit_code == 0, (r1.output, r2.output)
    assert store_info(f"{f}::/img")["groups"] == ["/img", "/txt"]
    assert read_store(f"{f}::/txt").dim == 3 and read_store(f"{f}::/img").dim == 5


# ----------------------------------------------------------------------------- info / export

def test_info_json_and_text(tmp_path):
    X = _data()
    write_store(tmp_path / "s.h5", X, [f"x{i}" for i in range(12)], modality="text",
                encoder="minilm", settings={"pool": "mean"})
    r = CliRunner().invoke(cli, ["info", str(tmp_path / "s.h5"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert {k: info[k] for k in ("n", "dim", "dtype", "modality", "encoder", "format_version")} == \
        {"n": 12, "dim": 5, "dtype": "float32", "modality": "text", "encoder": "minilm",
         "format_version": 1}
    assert info["ids_sample"] == ["x0", "x1", "x2", "x3", "x4"]
    r2 = CliRunner().invoke(cli, ["--json", "info", str(tmp_path / "s.h5")])  # global --json too
    assert json.loads(r2.stdout)["n"] == 12
    r3 = CliRunner().invoke(cli, ["info", str(tmp_path / "s.h5")])
    assert r3.exit_code == 0
    for pattern in (r"^dim\s+5$", r"^encoder\s+minilm$", r"^rows \(n\)\s+12$",
                    r"^modality\s+text$", r"^format version\s+1$"):
        assert re.search(pattern, r3.stdout, re.M), (pattern, r3.stdout)
    assert "x0, x1, x2, x3, x4, ..." in r3.stdout


def test_info_errors(tmp_path, capsys):
    (tmp_path / "junk.h5").write_text("nope")
    code, _, err = run(["info", tmp_path / "junk.h5"], capsys)
    assert_one_line_error(code, err, "not a valid HDF5 file")
    code, _, err = run(["info", tmp_path / "absent.h5"], capsys)
    assert_one_line_error(code, err, "not found")
    write_store(f"{tmp_path / 'g.h5'}::/a", _data(), None)
    code, _, err = run(["info", tmp_path / "g.h5"], capsys)
    assert_one_line_error(code, err, "sets there: /a")


def test_export_round_trip_and_ids(tmp_path):
    X = _data().astype(np.float16)
    ids = [f"e{i}" for i in range(12)]
    write_store(f"{tmp_path / 's.h5'}::/g", X, ids)
    r = CliRunner().invoke(cli, ["export", f"{tmp_path / 's.h5'}::/g", "-o", str(tmp_path / "o.npy"),
                                 "--ids-out", str(tmp_path / "o.txt")])
    assert r.exit_code == 0, r.output
    Y = np.load(tmp_path / "o.npy")
    assert Y.dtype == np.float16 and Y.tobytes() == X.tobytes()
    assert (tmp_path / "o.txt").read_text().splitlines() == ids


def test_export_errors_write_nothing(tmp_path, capsys):
    write_store(tmp_path / "s.h5", _data(), None)
    code, _, err = run(["export", tmp_path / "s.h5", "-o", tmp_path / "o.csv"], capsys)
    assert_one_line_error(code, err, ".npy")
    code, _, err = run(["export", tmp_path / "absent.h5", "-o", tmp_path / "o.npy"], capsys)
    assert_one_line_error(code, err, "not found")
    code, _, err = run(["export", tmp_path / "s.h5", "-o", tmp_path / "nodir" / "o.npy"], capsys)
    assert_one_line_error(code, err, "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


# ----------------------------------------------------------------------------- subprocess

def _fastcka(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fastcka", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_subprocess_exit_codes_and_one_line_stderr(tmp_path):
    X = _data()
    np.save(tmp_path / "x.npy", X)
    ok = _fastcka("import", "x.npy", "-o", "s.h5", cwd=tmp_path)
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    info = _fastcka("info", "s.h5", "--json", cwd=tmp_path)
    assert info.returncode == 0 and json.loads(info.stdout)["n"] == 12
    X[0, 0] = np.nan
    np.save(tmp_path / "bad.npy", X)
    (tmp_path / "junk.h5").write_text("not hdf5")
    blob = (tmp_path / "s.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(blob[: len(blob) // 2])
    for args in (["import", "bad.npy", "-o", "b.h5"], ["info", "absent.h5"],
                 ["import", "x.npy"], ["export", "s.h5", "-o", "y.txt"], ["info", "junk.h5"],
                 ["export", "cut.h5", "-o", "c.npy"], ["info", "s.h5::/nope"]):
        p = _fastcka(*args, cwd=tmp_path)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stdout == ""
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in p.stderr, (args, p.stderr)
    assert not (tmp_path / "b.h5").exists()


def test_done_when_reference_import(tmp_path, shared_data):
    emb = shared_data / "embeddings"
    src, ids = emb / "flickr8k_image_efficientnet_lite0.npy", emb / "flickr8k_ids.txt"
    if not (src.exists() and ids.exists()):
        pytest.skip(f"reference embeddings absent in {emb}")
    p = _fastcka("import", src, "--ids", ids, "-o", "img.h5", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    q = _fastcka("info", "img.h5", "--json", cwd=tmp_path)
    assert q.returncode == 0, q.stderr
    info = json.loads(q.stdout)
    assert info["n"] == 1000 and info["dim"] == 1280
    es = read_store(tmp_path / "img.h5")
    assert es.X.tobytes() == np.load(src).tobytes()
    assert es.ids.tolist() == ids.read_text().split()


def test_reference_embeddings_cli_round_trip(tmp_path, reference_embeddings, shared_data):
    ids, img, txt = reference_embeddings
    emb = shared_data / "embeddings"
    runner = CliRunner()
    f = tmp_path / "ref.h5"
    for name, src, mod in (("image", "flickr8k_image_efficientnet_lite0.npy", "image"),
                           ("text", "flickr8k_caption_minilm_l6_mean5.npy", "text")):
        r = runner.invoke(cli, ["import", str(emb / src), "--ids", str(emb / "flickr8k_ids.txt"),
                                "-o", f"{f}::/{name}", "--modality", mod])
        assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["export", f"{f}::/text", "-o", str(tmp_path / "t.npy"),
                            "--ids-out", str(tmp_path / "t.txt")])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "t.npy").tobytes() == txt.tobytes()
    assert (tmp_path / "t.txt").read_text().split() == ids
    assert read_store(f"{f}::/image").X.tobytes() == img.tobytes()


@pytest.mark.parametrize("comp, expected", [("lzf", "lzf"), ("none", None), ("gzip", "gzip")])
def test_import_compression_choice(tmp_path, comp, expected):
    X = _data(n=300, d=16)
    np.save(tmp_path / "x.npy", X)
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.h5"),
                                 "--compression", comp])
    assert r.exit_code == 0, r.output
    assert store_info(tmp_path / "s.h5")["compression"] == expected
    assert read_store(tmp_path / "s.h5").X.tobytes() == X.tobytes()
