"""``fastcka demo`` end to end on a small n, and the synthetic scene generator."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fastcka.errors import InputError
from fastcka.scenes import COLORS, POSITIONS, SHAPES, SIZES, render_scene, scene_specs


def test_scene_specs_deterministic_and_captioned():
    a, b, c = scene_specs(200, seed=3), scene_specs(200, seed=3), scene_specs(200, seed=4)
    assert a == b and a != c
    assert scene_specs(50, seed=3) == a[:50]  # a prefix of the same sequence
    assert len({s.id for s in a}) == 200
    for s in a:
        assert s.shape in SHAPES and s.color in COLORS and s.size in SIZES
        assert s.position in POSITIONS and s.background != s.color
        assert s.caption.startswith(f"a {s.size} {s.color} {s.shape} ")
        assert s.caption.endswith(f" on a {s.background} background")
    # several values of every attribute appear
    assert {s.shape for s in a} == set(SHAPES) and len({s.position for s in a}) == 9
    assert any(s.caption == f"a {s.size} {s.color} {s.shape} at the top left on a {s.background} "
               "background" for s in a)


def test_scene_captions_are_unique():
    # before: the demo's 1000 scenes had 934 distinct captions (130 indistinguishable rows)
    import itertools

    from fastcka.scenes import BACKGROUNDS, MAX_SCENES

    for n, seed in ((1000, 0), (1000, 1), (3000, 7)):
        assert len({s.caption for s in scene_specs(n, seed=seed)}) == n
    # the caption space, counted independently: background never named like the shape's colour
    space = {f"{z} {c} {sh} {p} {b}" for sh, c, z, p, b in itertools.product(
        SHAPES, COLORS, SIZES, POSITIONS, BACKGROUNDS) if b != c}
    assert MAX_SCENES == len(space)
    with pytest.raises(InputError, match=f"at most {len(space)}"):
        scene_specs(len(space) + 1)


def test_render_scene_colours_and_position():
    sc = scene_specs(30, seed=0)
    for s in sc[:10]:
        img = np.asarray(render_scene(s, 64)).astype(int)
        assert img.shape == (64, 64, 3)
        assert np.array_equal(np.asarray(render_scene(s, 64)), img)  # deterministic
        corners = [img[0, 0], img[0, -1], img[-1, 0], img[-1, -1]]
        from fastcka.scenes import BACKGROUNDS

        bg = np.array(BACKGROUNDS[s.background])
        shape_px = np.abs(img - np.array(COLORS[s.color])).sum(-1) < 30
        assert shape_px.sum() > 20  # the shape is drawn in its colour
        if not any(np.abs(c - bg).sum() < 6 for c in corners):
            pytest.fail(f"no corner shows the {s.background} background in {s.id}")
        ys, xs = np.nonzero(shape_px)
        col, row = POSITIONS[s.position]
        assert int(xs.mean() * 3 // 64) == col and int(ys.mean() * 3 // 64) == row


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    pytest.importorskip("torch")
    import fastcka
    from fastcka.cli.main import main
    from fastcka.store import read_store

    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as exc:
        main(["-q", "--json", "demo", "-o", str(out), "--n", "40", "--n-init", "3",
              "--permutations", "20", "--seed", "1", "--device", "cpu"])
    assert exc.value.code == 0
    res = json.loads(capsys.readouterr().out)
    for f in ("report.md", "results.json", "kernels.png", "accuracy.png", "permutation.png",
              "scenes.png", "embeddings.h5", "scenes/captions.csv", "scenes/images/scene-00039.png"):
        assert (out / f).is_file(), f
    assert json.loads((out / "results.json").read_text()) == res
    report = (out / "report.md").read_text()
    assert f"{res['cka']['linear']['cka']:.4f}" in report

    img, txt = read_store(out / "embeddings.h5::/image"), read_store(out / "embeddings.h5::/text")
    assert img.n == txt.n == res["n"] == 40 and img.ids.tolist() == txt.ids.tolist()
    assert img.encoder == "efficientnet-lite0" and txt.encoder == "minilm-l6"
    # the captions in the store are the scenes' captions
    with open(out / "scenes" / "captions.csv", newline="") as fh:
        caps = {r["image"]: r["caption"] for r in csv.DictReader(fh)}
    assert caps == {s.id: s.caption for s in scene_specs(40, seed=1)}

    # CKA in the report == fastcka.cka recomputed from the stored embeddings
    for kernel in ("linear", "rbf"):
        c = res["cka"][kernel]
        assert c["cka"] == pytest.approx(fastcka.cka(img.X, txt.X, kernel=kernel), abs=1e-10)
        assert 0 < c["p_value"] <= 1 and c["n_permutations"] == 20
    sm, rt = res["seeded_match"], res["retrieval"]
    seeds, queries = res["seed_ids"], res["query_ids"]
    assert (res["src"], res["tgt"], sm["direction"]) == ("text", "image", "src-to-tgt")
    assert len(seeds) == sm["n_seeds"] and len(queries) == sm["n_queries"]
    assert sm["n_seeds"] + sm["n_queries"] <= 40 and not set(seeds) & set(queries)
    assert 0 <= sm["accuracy"] <= 1 and sm["chance"] == pytest.approx(1 / len(queries))
    for k in ("1", "5", "10"):
        assert 0 <= rt["src-to-tgt"][k] <= 1 and 0 <= rt["tgt-to-src"][k] <= 1
        assert rt["chance"][k] == pytest.approx(min(1, int(k) / len(queries)))
    assert rt["src-to-tgt"]["1"] <= rt["src-to-tgt"]["5"] <= rt["src-to-tgt"]["10"]
    # retrieval recomputed from the stores with the reported seeds/queries
    pos = {i: n for n, i in enumerate(img.ids.tolist())}
    si, qi = [pos[i] for i in seeds], [pos[i] for i in queries]
    T, Im = txt.X.astype(np.float64), img.X.astype(np.float64)
    scores = fastcka.local_cka(T[qi], Im[qi], T[si], Im[si], kernel="linear", device="cpu")
    rank = (scores > np.diag(scores)[:, None]).sum(axis=1)  # targets scoring above the truth
    rank_t = (scores.T > np.diag(scores)[:, None]).sum(axis=1)  # images ranking the captions
    for k in (1, 5, 10):
        assert rt["src-to-tgt"][str(k)] == pytest.approx(np.mean(rank < k))
        assert rt["tgt-to-src"][str(k)] == pytest.approx(np.mean(rank_t < k))
    # matching recomputed with the same settings gives the same accuracy
    m = fastcka.seeded_match(T, Im, seeds=sm["n_seeds"], queries=sm["n_queries"], kernel="rbf",
                             n_init=3, rng=1, device="cpu")
    assert m.accuracy == pytest.approx(sm["accuracy"])
    assert [img.ids[i] for i in m.query_idx] == queries
