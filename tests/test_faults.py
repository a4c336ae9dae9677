"""Faults through real ``fastcka`` subprocesses: concurrent writers, signals, disk full, outputs
equal to inputs, permissions and symlinks (issue 12, items 1-6 and 8)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastcka.store import list_sets, partial_path, read_partial, read_store, write_store

ROOT = Path(__file__).resolve().parents[1]

# A fastcka process with its imports done, waiting for one line on stdin before it runs main():
# lets a test line up two writers (or a signal) with the moment that matters.
_WARM = ("import sys, numpy, h5py\nimport fastcka.cli.main as m\n"
         "print('ready', flush=True)\nsys.stdin.readline()\nm.main(sys.argv[1:])\n")


def _env(**extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **extra}
    env.pop("FASTCKA_DEBUG", None)
    return env


def _fastcka(*args, cwd, env=None, umask=None):
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "fastcka", *map(str, args)], cwd=cwd,
                          env=env or _env(), capture_output=True, text=True, timeout=180,
                          preexec_fn=pre)


def _warm(*args, cwd, env=None):
    p = subprocess.Popen([sys.executable, "-c", _WARM, *map(str, args)], cwd=cwd,
                         env=env or _env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready", p.communicate()[1][-800:]
    return p


def _go(p):
    p.stdin.write("\n")
    p.stdin.flush()


def _wait_for(cond, proc, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            pytest.fail(f"process ended before {what}: {proc.communicate()[1][-800:]}")
        time.sleep(0.005)
    pytest.fail(f"no {what} within {timeout} s")


def _temps(folder: Path, name: str):
    return [p for p in folder.iterdir() if p.name.startswith(f".{name}.") and ".tmp" in p.name]


def _error_lines(err: str):
    return [ln for ln in err.strip().splitlines() if "WARNING" not in ln]


@pytest.fixture(scope="module")
def big_npy(tmp_path_factory):
    """A 40 MB float32 array: gzip-compressing it into a store takes a noticeable while."""
    p = tmp_path_factory.mktemp("big") / "big.npy"
    np.save(p, np.random.default_rng(0).standard_normal((20000, 512)).astype(np.float32))
    return p


def _small(folder: Path, name="small.npy", n=12, d=5, seed=1):
    X = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    np.save(folder / name, X)
    return X


# ----------------------------------------------------------------------------- two writers

def test_two_writers_adding_sets_to_one_file_keep_both(tmp_path, big_npy):
    _small(tmp_path)
    a = _warm("import", big_npy, "-o", "f.h5::/a", cwd=tmp_path)
    b = _warm("import", "small.npy", "-o", "f.h5::/b", cwd=tmp_path)
    _go(a)
    _wait_for(lambda: _temps(tmp_path, "f.h5"), a, "temporary file of the first writer")
    _go(b)
    _, err_b = b.communicate(timeout=120)
    _, err_a = a.communicate(timeout=120)
    assert a.returncode == 0 and b.returncode == 0, (err_a, err_b)
    assert f"waiting for process {a.pid}" in err_b  # the second writer said why it waited
    assert sorted(list_sets(tmp_path / "f.h5")) == ["/a", "/b"]  # neither set lost
    assert read_store(f"{tmp_path / 'f.h5'}::/a").n == 20000
    assert read_store(f"{tmp_path / 'f.h5'}::/b").n == 12
    assert not _temps(tmp_path, "f.h5") and not list(tmp_path.glob(".*.lock"))


# ----------------------------------------------------------------------------- signals

@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_import_stops_cleanly(tmp_path, big_npy, sig, code):
    old = _small(tmp_path)
    assert _fastcka("import", "small.npy", "-o", "s.h5", cwd=tmp_path).returncode == 0
    before = (tmp_path / "s.h5").read_bytes()
    p = _warm("import", big_npy, "-o", "s.h5::/big", cwd=tmp_path)
    _go(p)
    _wait_for(lambda: _temps(tmp_path, "s.h5"), p, "temporary file")
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    assert err.strip().splitlines() == ["fastcka: interrupted"], err
    assert (tmp_path / "s.h5").read_bytes() == before  # old store intact
    assert np.array_equal(read_store(tmp_path / "s.h5").X, old)
    assert not _temps(tmp_path, "s.h5") and out == ""


def test_sigkill_temporary_removed_by_next_write(tmp_path, big_npy):
    _small(tmp_path)
    p = _warm("import", big_npy, "-o", "s.h5", cwd=tmp_path)
    _go(p)
    _wait_for(lambda: _temps(tmp_path, "s.h5"), p, "temporary file")
    p.kill()
    p.communicate(timeout=60)
    left = _temps(tmp_path, "s.h5")
    assert left and not (tmp_path / "s.h5").exists()
    r = _fastcka("import", "small.npy", "-o", "s.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not _temps(tmp_path, "s.h5")  # the dead writer's temporary is gone
    assert "removed stale temporary" in r.stderr and str(p.pid) in r.stderr
    assert read_store(tmp_path / "s.h5").n == 12


# ----------------------------------------------------------------------------- disk full

@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs (we are root), or a folder where os.write fails with ENOSPC past 64 kB."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode == 0:
        yield mnt, None
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        return
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import errno, os\n_w = os.write\n_root = os.environ['FASTCKA_TEST_FULL']\n"
        "def write(fd, data):\n"
        "    try:\n        p = os.readlink(f'/proc/self/fd/{fd}')\n    except OSError:\n        p = ''\n"
        "    if p.startswith(_root) and os.lseek(fd, 0, 1) + len(data) > 65536:\n"
        "        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "    return _w(fd, data)\nos.write = write\n")
    yield mnt, _env(FASTCKA_TEST_FULL=str(mnt), PYTHONPATH=f"{shim}{os.pathsep}{ROOT}")


def test_disk_full_import_add_set_and_export(tmp_path, full_disk):
    mnt, env = full_disk
    _small(tmp_path)
    np.save(tmp_path / "mid.npy", np.random.default_rng(2).standard_normal((3000, 128)).astype(np.float32))
    assert _fastcka("import", tmp_path / "small.npy", "-o", "s.h5", cwd=mnt, env=env).returncode == 0
    before = (mnt / "s.h5").read_bytes()
    for args in (["import", tmp_path / "mid.npy", "-o", "s.h5::/more", "--compression", "none"],
                 ["import", tmp_path / "mid.npy", "-o", "s.h5", "--compression", "none"],
                 ["import", tmp_path / "mid.npy", "-o", "new.h5", "--compression", "none"]):
        r = _fastcka(*args, cwd=mnt, env=env)
        assert r.returncode == 1, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "no space left on device" in lines[0], r.stderr
        assert lines[0].startswith("fastcka: error: ") and "Traceback" not in r.stderr
        assert (mnt / "s.h5").read_bytes() == before  # the old store is intact
        assert not (mnt / "new.h5").exists()
        assert [p.name for p in mnt.iterdir()] == ["s.h5"]  # no temporary, no lock left
    assert _fastcka("import", tmp_path / "mid.npy", "-o", tmp_path / "mid.h5", cwd=tmp_path).returncode == 0
    r = _fastcka("export", tmp_path / "mid.h5", "-o", mnt / "x.npy", cwd=tmp_path, env=env)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no space left on device" in r.stderr and "x.npy" in r.stderr
    assert [p.name for p in mnt.iterdir()] == ["s.h5"]


# ----------------------------------------------------------------------------- output == input

@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    write_store(tmp_path / "src.h5", X, [f"i{k}" for k in range(40)])
    write_store(tmp_path / "tgt.h5", X @ rng.standard_normal((6, 6)).astype(np.float32),
                [f"i{k}" for k in range(40)])
    (tmp_path / "seeds.csv").write_text("".join(f"i{k}\n" for k in range(10)))
    os.symlink("src.h5", tmp_path / "link.h5")
    return tmp_path


@pytest.mark.parametrize("args, victim", [
    (["match", "src.h5", "tgt.h5", "--method", "cosine", "--seeds", "8", "-o", "src.h5"], "src.h5"),
    (["match", "src.h5", "tgt.h5", "--method", "cosine", "--seeds", "8", "-o", "link.h5"], "src.h5"),
    (["retrieve", "src.h5", "tgt.h5", "--seeds", "8", "-o", "tgt.h5"], "tgt.h5"),
    (["match", "src.h5", "tgt.h5", "--method", "cosine", "--seed-ids", "seeds.csv", "-o", "seeds.csv"],
     "seeds.csv"),
    (["export", "src.h5", "-o", "x.npy", "--ids-out", "src.h5"], "src.h5"),
    (["cka", "src.h5", "tgt.h5", "-o", "tgt.h5"], "tgt.h5"),
])
def test_output_equal_to_an_input_is_refused(pair, args, victim):
    before = (pair / victim).read_bytes()
    r = _fastcka(*args, cwd=pair)
    assert r.returncode == 2, r.stderr
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and "refusing to overwrite an input" in lines[0], r.stderr
    assert (pair / victim).read_bytes() == before
    assert (pair / "link.h5").is_symlink()


# ----------------------------------------------------------------------------- permissions

def test_modes_follow_cp_and_symlinks_write_the_target(tmp_path):
    _small(tmp_path)
    r = _fastcka("import", "small.npy", "-o", "u022.h5", cwd=tmp_path, umask=0o022)
    assert r.returncode == 0 and stat.S_IMODE((tmp_path / "u022.h5").stat().st_mode) == 0o644
    r = _fastcka("import", "small.npy", "-o", "u002.h5", cwd=tmp_path, umask=0o002)
    assert r.returncode == 0 and stat.S_IMODE((tmp_path / "u002.h5").stat().st_mode) == 0o664
    os.chmod(tmp_path / "u022.h5", 0o664)
    r = _fastcka("import", "small.npy", "-o", "u022.h5::/second", cwd=tmp_path, umask=0o077)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((tmp_path / "u022.h5").stat().st_mode) == 0o664  # replaced file keeps its mode
    assert sorted(list_sets(tmp_path / "u022.h5")) == ["/", "/second"]
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real" / "target.h5", tmp_path / "link.h5")  # dangling at first
    for group in ("", "::/g"):
        r = _fastcka("import", "small.npy", "-o", f"link.h5{group}", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "link.h5").is_symlink()  # the link stays a link
    assert sorted(list_sets(tmp_path / "real" / "target.h5")) == ["/", "/g"]
    os.symlink("real/r.csv", tmp_path / "r-link.csv")
    r = _fastcka("cka", "u002.h5", "real/target.h5", "-o", "r-link.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r-link.csv").is_symlink() and (tmp_path / "real" / "r.csv").is_file()


# ----------------------------------------------------------------------------- embed

@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from _tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-faults"))["vit"]


@pytest.fixture
def images(tmp_path):
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(16):
        Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(d / f"im{i:02d}.png")
    return d


def _embed_cmd(images, out, vit, *extra):
    return [sys.executable, "-m", "fastcka", "--json", "embed", "image", str(images), "-o", str(out),
            "--encoder", str(vit), "--batch-size", "2", "--workers", "1", *extra]


def _partial_rows(out):
    with contextlib.suppress(Exception):
        return read_partial(out).n
    return 0


def test_second_live_embed_writer_is_refused(tmp_path, tiny_vit, images):
    out = tmp_path / "e.h5"
    slow = _env(FASTCKA_EMBED_BATCH_DELAY="2.0")
    first = subprocess.Popen(_embed_cmd(images, out, tiny_vit), env=slow, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: _partial_rows(out) >= 2, first, "rows in the partial folder", 120)
    second = subprocess.run(_embed_cmd(images, out, tiny_vit), env=_env(), text=True,
                            capture_output=True, timeout=120)
    assert second.returncode == 1, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0], second.stderr
    stdout, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    rep = json.loads(stdout)
    es = read_store(out)
    assert rep["n_rows"] == es.n == 16  # the first run reports exactly what the store holds
    assert sorted(es.ids.tolist()) == [f"im{i:02d}.png" for i in range(16)]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_embed_keeps_partial_for_resume(tmp_path, tiny_vit, images, sig, code):
    out = tmp_path / "e.h5"
    p = subprocess.Popen(_embed_cmd(images, out, tiny_vit), text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env(FASTCKA_EMBED_BATCH_DELAY="0.3"))
    _wait_for(lambda: _partial_rows(out) >= 4, p, "rows in the partial folder", 120)
    t0 = time.monotonic()
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert time.monotonic() - t0 < 10  # promptly
    assert p.returncode == code and err.strip().splitlines() == ["fastcka: interrupted"], err
    assert not out.exists()
    kept = read_partial(out).n
    assert 4 <= kept < 16
    r = subprocess.run(_embed_cmd(images, out, tiny_vit, "--resume"), env=_env(), text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["n_existing"] == kept and rep["n_written"] == 16 - kept
    assert sorted(read_store(out).ids.tolist()) == [f"im{i:02d}.png" for i in range(16)]
    assert not partial_path(out).exists()
