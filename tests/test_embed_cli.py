"""``fastcka embed``: end to end through the CLI, errors by id, resume after a real kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
from _tiny_models import build_tiny_models  # noqa: E402
from PIL import Image  # noqa: E402

from fastcka.cli.main import main  # noqa: E402
from fastcka.store import partial_path, read_partial, read_store  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("tiny-cli"))


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(20):
        Image.fromarray((rng.random((24, 20 + i, 3)) * 255).astype(np.uint8)).save(d / f"im{i:02d}.png")
    return d


def run(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(["-q", *map(str, args)])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_embed_image_folder_matches_library(capsys, tiny, images, tmp_path):
    from fastcka.datasets import load_image, read_images
    from fastcka.encoders import get_encoder

    out = tmp_path / "img.h5"
    code, stdout, _ = run(capsys, "--json", "embed", "image", images, "-o", out, "--encoder",
                          tiny["vit"], "--batch-size", "3", "--workers", "2", "--pooling", "cls")
    assert code == 0
    rep = json.loads(stdout)
    assert rep["n_rows"] == 20 and rep["n_written"] == 20 and rep["failed"] == []
    es = read_store(out)
    assert es.ids.tolist() == [f"im{i:02d}.png" for i in range(20)]
    assert es.modality == "image" and es.encoder == str(tiny["vit"])
    assert es.settings["pooling"] == "cls" and es.settings["batch_size"] == 3
    enc = get_encoder(str(tiny["vit"]), "image", device="cpu", pooling="cls")
    want = np.concatenate([enc.infer([enc.prepare(load_image(r))]) for r in read_images(images)])
    np.testing.assert_allclose(es.X, want, atol=1e-5)  # batched == one at a time
    assert not partial_path(out).exists()


def test_limit_and_groups(capsys, tiny, images, tmp_path):
    out = f"{tmp_path / 'both.h5'}::/img"
    assert run(capsys, "embed", "image", images, "-o", out, "--encoder", tiny["dinov2"],
               "--limit", "5")[0] == 0
    assert read_store(out).ids.tolist() == [f"im{i:02d}.png" for i in range(5)]


def test_unreadable_image_skipped_or_fatal(capsys, tiny, images, tmp_path):
    (images / "im07.png").write_bytes(b"this is not a png")
    out = tmp_path / "skip.h5"
    code, stdout, err = run(capsys, "--json", "embed", "image", images, "-o", out, "--encoder",
                            tiny["vit"], "--on-error", "skip")
    assert code == 0
    rep = json.loads(stdout)
    assert [f["id"] for f in rep["failed"]] == ["im07.png"]
    assert "im07.png" not in read_store(out).ids.tolist() and read_store(out).n == 19
    out2 = tmp_path / "fail.h5"
    code, _, err = run(capsys, "embed", "image", images, "-o", out2, "--encoder", tiny["vit"],
                       "--on-error", "fail", "--batch-size", "4")
    assert code == 2
    assert "image 'im07.png' cannot be read" in err and len(err.strip().splitlines()) == 1
    assert not out2.exists()  # nothing under the final name
    assert partial_path(out2).is_dir()  # the completed batches stay for --resume


def test_embed_text_caption_mean_and_per_caption(capsys, tiny, tmp_path):
    from fastcka.encoders import get_encoder

    p = tmp_path / "caps.csv"
    p.write_text("image,caption\nx.jpg,a red dog\ny.jpg,\"a cat, blue\"\nx.jpg,the dog runs\n")
    out = tmp_path / "t.h5"
    assert run(capsys, "embed", "text", p, "-o", out, "--encoder", tiny["bert"])[0] == 0
    es = read_store(out)
    enc = get_encoder(str(tiny["bert"]), "text", device="cpu")
    E = enc.infer(enc.prepare(["a red dog", "the dog runs", "a cat, blue"]))
    assert es.ids.tolist() == ["x.jpg", "y.jpg"] and es.modality == "text"
    np.testing.assert_allclose(es.X, np.stack([(E[0] + E[1]) / 2, E[2]]), atol=1e-5)
    out2 = tmp_path / "t2.h5"
    assert run(capsys, "embed", "text", p, "-o", out2, "--encoder", tiny["bert"],
               "--no-caption-mean", "--batch-size", "1")[0] == 0
    es2 = read_store(out2)
    assert es2.ids.tolist() == ["x.jpg#0", "x.jpg#1", "y.jpg"]
    np.testing.assert_allclose(es2.X, E, atol=1e-5)


def test_embed_errors_are_one_line(capsys, tiny, images, tmp_path):
    code, _, err = run(capsys, "embed", "image", images, "-o", tmp_path / "x.h5", "--encoder",
                       "no-such-org/no-such-model")
    assert code == 2 and "not available offline" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "embed", "text", images, "-o", tmp_path / "x.h5")
    assert code == 2 and "no captions.csv" in err
    code, _, err = run(capsys, "embed", "image", images, "-o", tmp_path / "no" / "dir.h5",
                       "--encoder", tiny["vit"])
    assert code == 2 and "output folder does not exist" in err


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", FASTCKA_EMBED_BATCH_DELAY="0.25")
    env.pop("FASTCKA_DEBUG", None)
    return env


def _committed_rows(out):
    try:
        return read_partial(out).n
    except Exception:  # the folder is being set up
        return 0


def test_resume_after_kill_gives_every_id_once(capsys, tiny, images, tmp_path):
    out = tmp_path / "killed.h5"
    def cmd(output, *extra):
        return [sys.executable, "-m", "fastcka", "-q", "embed", "image", str(images), "-o",
                str(output), "--encoder", str(tiny["vit"]), *extra]


    proc = subprocess.Popen(cmd(out, "--batch-size", "2", "--workers", "1"), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part = partial_path(out)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if part.is_dir() and _committed_rows(out) >= 6:  # 3 batches of 2
                break
            assert proc.poll() is None, proc.communicate()[1].decode()[-500:]
            time.sleep(0.05)
        else:
            pytest.fail("the embed run wrote no chunks in 120 s")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # killed: nothing under the final name
    n_done = read_partial(out).n // 2  # committed batches of 2 (one segment file holds them all)
    assert 3 <= n_done < 10 and len(list(part.glob("segment-*.fcs"))) == 1

    code, stdout, err = run(capsys, "--json", *cmd(out, "--batch-size", "3", "--resume")[4:])
    assert code == 0, err
    rep = json.loads(stdout)
    assert rep["n_existing"] >= 2 * n_done and rep["n_existing"] + rep["n_written"] == 20
    es = read_store(out)
    assert sorted(es.ids.tolist()) == [f"im{i:02d}.png" for i in range(20)]  # each id exactly once
    assert not part.exists()
    fresh = tmp_path / "fresh.h5"
    assert run(capsys, *cmd(fresh, "--batch-size", "5")[4:])[0] == 0
    ref = read_store(fresh).select(es.ids.tolist())
    np.testing.assert_allclose(es.X, ref.X, atol=1e-5)


def test_embed_progress_lines_in_a_batch_log(tiny, images, tmp_path):
    """stderr is a pipe (a SLURM log): one line per batch here (interval 0), none with -q."""
    env = dict(_env(), FASTCKA_PROGRESS_INTERVAL="0", FASTCKA_EMBED_BATCH_DELAY="0")

    def embed(*extra):
        return subprocess.run([sys.executable, "-m", "fastcka", "embed", "image", str(images),
                               "--encoder", str(tiny["vit"]), "--batch-size", "5", *extra],
                              env=env, capture_output=True, text=True, timeout=300)

    p = embed("-o", str(tmp_path / "a.h5"))
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("fastcka: embed images: ")]
    assert [ln.split(",")[0] for ln in lines[:4]] == [
        f"fastcka: embed images: {k}/20 ({5 * k}%)" for k in (5, 10, 15, 20)], p.stderr
    assert all(" img/s, ETA " in ln for ln in lines[:4])
    assert lines[-1].startswith("fastcka: embed images: done 20/20 img in ")
    q = embed("-o", str(tmp_path / "b.h5"), "-q")
    assert q.returncode == 0 and q.stderr == "", q.stderr


def test_embed_text_counts_images_and_captions_apart(capsys, tiny, tmp_path):
    rows = ["image,caption"] + [f"im{i},caption {k} of image {i}" for i in range(6) for k in (0, 1)]
    (tmp_path / "caps.csv").write_text("\n".join(rows) + "\n")
    code, out, _ = run(capsys, "embed", "text", tmp_path / "caps.csv", "-o", tmp_path / "t.h5",
                       "--encoder", tiny["bert"])
    assert code == 0
    assert "this run: 6 image ids (12 captions) embedded in " in out, out
    assert "captions/s" in out and read_store(tmp_path / "t.h5").n == 6
    code, out, _ = run(capsys, "embed", "text", tmp_path / "caps.csv", "-o", tmp_path / "u.h5",
                       "--encoder", tiny["bert"], "--no-caption-mean")
    assert code == 0 and "this run: 12 captions embedded in " in out, out
