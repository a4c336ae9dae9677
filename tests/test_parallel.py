"""The execution layer on a real Dask LocalCluster (2 worker processes): every unit of work
gives the in-process result bit for bit, also when a worker is killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from _cli import assert_one_line_error, paired_stores, run

from fastcka.parallel import InProcess, executor, parse_scheduler
from fastcka.qap import quadratic_assignment
from fastcka.retrieval import TOPK_KEYS
from fastcka.seeded import seeded_match


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of 2 worker processes for the module (started once, closed after)."""
    with executor("local:2") as ex:
        ex.client.wait_for_workers(2, timeout=60)
        yield ex


def _problem(n=40, m=8, d=4, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    Y = X[rng.permutation(n)] + 0.2 * rng.normal(size=(n, d))
    pm = np.stack([np.arange(m), np.arange(m)], axis=1)
    return X @ X.T, Y @ Y.T, pm


def _same(r0, r1):
    assert np.array_equal(r0.col_ind, r1.col_ind)
    assert r0.fun == r1.fun
    assert np.array_equal(r0.all_fun, r1.all_fun)
    assert np.array_equal(r0.all_nit, r1.all_nit)
    assert r0.best_index == r1.best_index


@pytest.mark.parametrize("spec,expected", [
    (None, ("none", None)), ("none", ("none", None)), ("", ("none", None)),
    ("local", ("local", None)), ("local:3", ("local", 3)), ("SLURM", ("slurm", None)),
    ("tcp://10.0.0.1:8786", ("tcp", "tcp://10.0.0.1:8786")),
])
def test_parse_scheduler(spec, expected):
    assert parse_scheduler(spec) == expected


@pytest.mark.parametrize("spec", ["local:0", "local:x", "tcp://host", "tcp://:80", "pbs", 3])
def test_parse_scheduler_refuses(spec):
    with pytest.raises(ValueError, match="scheduler"):
        parse_scheduler(spec)


def test_import_fastcka_imports_no_dask():
    code = ("import sys, fastcka, fastcka.parallel, fastcka.qap, fastcka.cli.main\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed', 'dask_jobqueue'))\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("rng_kind", ["generator", "int"])
@pytest.mark.parametrize("batch_size", [1, 3, None])
def test_faq_restarts_equal_in_process(cluster, rng_kind, batch_size):
    A, B, pm = _problem()

    def opts(**kw):
        rng = np.random.default_rng(7) if rng_kind == "generator" else 7
        return {"P0": "randomized", "maximize": True, "partial_match": pm, "n_init": 10,
                "batch_size": batch_size, "tol": 1e-5, "rng": rng, **kw}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)      # SciPy's warning for an int rng
        ref = quadratic_assignment(A, B, options=opts())
        for sched in (cluster, InProcess()):
            _same(ref, quadratic_assignment(A, B, options=opts(scheduler=sched)))
    assert len(np.unique(ref.all_fun)) > 1          # the restarts really differ


def test_faq_leaves_the_generator_where_in_process_does(cluster):
    A, B, pm = _problem()
    g0, g1 = np.random.default_rng(5), np.random.default_rng(5)
    base = {"P0": "randomized", "maximize": True, "partial_match": pm, "n_init": 6,
            "batch_size": 2}
    quadratic_assignment(A, B, options={**base, "rng": g0})
    quadratic_assignment(A, B, options={**base, "rng": g1, "scheduler": cluster})
    assert g0.random() == g1.random()


def test_seeded_match_equal_in_process(cluster):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(70, 4))
    S = np.tanh(Z @ rng.normal(size=(4, 9)))
    T = Z @ rng.normal(size=(4, 6)) + 0.05 * rng.normal(size=(70, 6))
    kw = {"seeds": 15, "queries": 40, "n_init": 8, "rng": 3, "device": "cpu"}
    ref = seeded_match(S, T, **kw)
    got = seeded_match(S, T, scheduler=cluster, **kw)
    assert np.array_equal(ref.matched_idx, got.matched_idx)
    assert ref.objective == got.objective
    assert np.array_equal(ref.all_objectives, got.all_objectives)


def kill_a_busy_worker(client, pids, th):
    """Start ``th`` (a run on the cluster) and SIGKILL the first worker process seen running a
    task (the process, not its nanny: Dask restarts it and reruns its tasks)."""
    th.start()
    killed = None
    deadline = time.time() + 60
    while killed is None and time.time() < deadline and th.is_alive():
        for addr, tasks in client.processing().items():
            if tasks and addr in pids:
                os.kill(pids[addr], signal.SIGKILL)
                killed = addr
                break
        time.sleep(0.005)
    th.join(120)
    assert killed is not None, "no task was running to kill"


def test_worker_killed_mid_run_gives_the_same_result(cluster):
    A, B, pm = _problem(n=170, m=20, d=6, seed=2)
    opts = {"P0": "randomized", "maximize": True, "partial_match": pm, "n_init": 16,
            "batch_size": 1, "tol": 1e-6, "maxiter": 40, "rng": np.random.default_rng(1)}
    ref = quadratic_assignment(A, B, options=opts)
    client = cluster.client
    pids = client.run(os.getpid)
    out = {}

    def work():
        out["res"] = quadratic_assignment(
            A, B, options={**opts, "rng": np.random.default_rng(1), "scheduler": cluster})

    kill_a_busy_worker(client, pids, threading.Thread(target=work))
    _same(ref, out["res"])
    client.wait_for_workers(2, timeout=60)               # the nanny restarted it


@pytest.fixture
def stores(tmp_path):
    return paired_stores(tmp_path)[:2]


def test_cli_match_on_local_cluster_and_tcp_equals_in_process(stores, cluster, capsys, tmp_path):
    src, tgt = stores
    argv = ["match", src, tgt, "--seeds", 15, "--queries", 30, "--n-init", 6, "--seed", 2,
            "--device", "cpu", "--json"]
    outs = {}
    for sched in ("none", "local:2", cluster.client.scheduler.address):
        o = tmp_path / f"m{len(outs)}.csv"
        code, out, err = run(["--scheduler", sched, *argv, "-o", o], capsys)
        assert code == 0, err
        r = json.loads(out)
        outs[sched] = (r["objective"], r["accuracy"], r["objective_spread"], o.read_bytes())
    vals = list(outs.values())
    assert vals[0][:3] == vals[1][:3] == vals[2][:3]
    # the result files differ only in the timing the meta records
    strip = [b"\n".join(ln for ln in v[3].splitlines() if b"seconds" not in ln) for v in vals]
    assert strip[0] == strip[1] == strip[2]


def test_cli_scheduler_from_environment(stores, capsys, monkeypatch):
    src, tgt = stores
    monkeypatch.setenv("FASTCKA_SCHEDULER", "bogus")
    code, out, err = run(["match", src, tgt, "--n-init", 2], capsys)
    assert_one_line_error(code, err, "scheduler", "bogus")


def test_cli_bad_scheduler_and_unreachable_scheduler(stores, capsys):
    import dask
    import distributed  # noqa: F401  (its config defaults first: leaving dask.config.set below
    #                     would otherwise drop the whole 'distributed' section it created)

    src, tgt = stores
    code, out, err = run(["--scheduler", "local:0", "match", src, tgt], capsys)
    assert_one_line_error(code, err, "local:N")
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code, out, err = run(["--scheduler", "tcp://127.0.0.1:9", "match", src, tgt, "--seeds",
                              15, "--queries", 30, "--n-init", 2], capsys)
    assert code == 1 and "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if "WARNING" not in ln]
    assert len(lines) == 1 and "cannot reach the Dask scheduler" in lines[0], err



@pytest.mark.parametrize("method,kernel,sigma", [("local-cka", "linear", "paper"),
                                                 ("local-cka", "rbf", "paper"),
                                                 ("relative", "linear", "paper")])
def test_retrieve_blocks_equal_in_process(cluster, method, kernel, sigma):
    from fastcka.retrieval import retrieve

    rng = np.random.default_rng(4)
    Z = rng.normal(size=(90, 5))
    S, T = np.tanh(Z @ rng.normal(size=(5, 8))), Z @ rng.normal(size=(5, 6))
    args = ((S[20:], T[20:], S[:20], T[:20]),)
    kw = {"k": 7, "method": method, "kernel": kernel, "sigma": sigma, "device": "cpu",
          "block": 16}
    ref = retrieve(*args, **kw)
    got = retrieve(*args, scheduler=cluster, **kw)
    for key in TOPK_KEYS:
        assert np.array_equal(getattr(ref, key), getattr(got, key)), key
    assert ref.accuracy == got.accuracy


@pytest.mark.parametrize("stream", [False, True])
def test_cli_retrieve_on_a_scheduler_equals_in_process(stores, cluster, capsys, tmp_path,
                                                       monkeypatch, stream):
    import fastcka.cli.retrieve as cli_retrieve

    if stream:
        monkeypatch.setattr(cli_retrieve, "FULL_MATRIX_MAX_QUERIES", 20)
    src, tgt = stores
    files = []
    for sched in ("none", cluster.client.scheduler.address):
        o = tmp_path / f"r{len(files)}.csv"
        code, out, err = run(["--scheduler", sched, "retrieve", src, tgt, "--seeds", 15,
                              "--block", 8, "-o", o], capsys)
        assert code == 0, err
        files.append(o.read_bytes())
    assert files[0] == files[1]


def test_eval_grid_cells_equal_in_process(cluster):
    from fastcka.evaluate import _same_rows, evaluate

    rng = np.random.default_rng(6)
    Z = rng.normal(size=(80, 4))
    S = np.tanh(Z @ rng.normal(size=(4, 9)))
    T = Z @ rng.normal(size=(4, 6)) + 0.05 * rng.normal(size=(80, 6))
    kw = {"methods": ["faq:rbf", "local-cka:linear", "linreg"], "seeds": [10, 20],
          "queries": 30, "draws": 2, "n_init": 4, "device": "cpu"}
    ref = evaluate(S, T, **kw)
    seen = []
    got = evaluate(S, T, scheduler=cluster, on_row=seen.append, **kw)
    assert len(ref) == len(got) == len(seen) == 12
    # Every column bit for bit, the float statistics (FAQ objective, seed-set CKA) included.  They
    # once differed in the last bits in the full suite: the tile-sum kernel was compiled with
    # fastmath reassociation, whose reduction order differed between a freshly compiled kernel
    # and the same kernel loaded from Numba's cache (a worker loads it; the test process had
    # compiled it).  Pinned by test_cka_kernels.py::test_tile_sums_same_bits_compiled_or_loaded_...
    floats = ("objective", "seed_cka", "seed_cka_linear")
    diff = [(r["method"], r["kernel"], r["n_seeds"], r["draw"], c, r[c], g[c])
            for r, g in zip(ref.rows, got.rows, strict=True) for c in floats
            if not (r[c] == pytest.approx(g[c], rel=RBF_RTOL, abs=0)
                    or (r[c] != r[c] and g[c] != g[c]))]
    assert not diff, diff
    assert _same_rows(got.rows, ref.rows, skip=("seconds", *floats))
    assert [r["accuracy"] for r in got.rows] == [r["accuracy"] for r in ref.rows]


RBF_RTOL = 0.0  # bit for bit: see test_tile_sums_same_bits_compiled_or_loaded_from_the_numba_cache


def _same_matrix(ref, got, kernel):
    """Every matrix bit for bit (RBF included, RBF_RTOL = 0)."""
    if kernel == "rbf" and RBF_RTOL:
        np.testing.assert_allclose(got, ref, rtol=RBF_RTOL, atol=0)
    else:
        assert np.array_equal(ref, got)


def _stores_for_matrix(n=50, seed=8):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    return [np.tanh(Z @ rng.normal(size=(3, 6))), Z @ rng.normal(size=(3, 9)),
            rng.normal(size=(n, 5)).astype(np.float32), np.sin(Z @ rng.normal(size=(3, 40)))]


MATRIX_CASES = [("linear", "paper", "biased"), ("linear", "paper", "unbiased"),
                ("rbf", "paper", "biased"), ("rbf", "kornblith", "unbiased"), ("rbf", 1.5, "biased")]


@pytest.mark.parametrize("kernel,sigma,estimator", MATRIX_CASES)
def test_cka_matrix_units_equal_the_fused_matrix(kernel, sigma, estimator):
    """Each input's and each pair's statistics alone give the in-process matrix bit for bit
    (both linear paths: Σp = 60 <= n = 80 takes the feature path, n = 50 the Gram path)."""
    import fastcka
    from fastcka._cka import _matrix_from
    from fastcka.parallel import cka_matrix_stats

    for n in (50, 80):
        Xs = _stores_for_matrix(n)
        kw = {"kernel": kernel, "sigma": sigma, "estimator": estimator, "device": "cpu"}
        ref = fastcka.cka_matrix(Xs, **kw)
        got = _matrix_from(cka_matrix_stats(Xs, kernel, sigma, 1.0), estimator)
        assert np.array_equal(ref, got), (n, ref - got)
        # and the matrix agrees with the pairwise function (to round-off: other reductions)
        assert ref[0, 1] == pytest.approx(fastcka.cka(Xs[0], Xs[1], **kw), rel=1e-12)


@pytest.mark.parametrize("kernel,sigma,estimator", MATRIX_CASES[::2])
def test_cka_matrix_on_the_cluster_equals_in_process(cluster, kernel, sigma, estimator):
    import fastcka

    Xs = _stores_for_matrix(80)
    kw = {"kernel": kernel, "sigma": sigma, "estimator": estimator, "device": "cpu"}
    ref = fastcka.cka_matrix(Xs, **kw)
    got = fastcka.cka_matrix(Xs, scheduler=cluster, **kw)
    _same_matrix(ref, got, kernel)
    assert not np.allclose(ref, np.eye(4))             # a real matrix, not the identity


def test_cka_matrix_worker_killed_mid_run_gives_the_same_result(cluster):
    import fastcka

    rng = np.random.default_rng(3)
    Xs = [rng.normal(size=(600, 12)) for _ in range(5)]
    ref = fastcka.cka_matrix(Xs, kernel="rbf")
    client = cluster.client
    pids = client.run(os.getpid)
    out = {}
    kill_a_busy_worker(client, pids, threading.Thread(target=lambda: out.update(
        M=fastcka.cka_matrix(Xs, kernel="rbf", scheduler=cluster))))
    _same_matrix(ref, out["M"], "rbf")
    client.wait_for_workers(2, timeout=60)


def test_cli_cka_matrix_on_a_scheduler_equals_in_process(cluster, capsys, tmp_path):
    from test_shard_merge import matrix_stores

    paths = matrix_stores(tmp_path)
    files = []
    for extra in ([], ["--kernel", "rbf"], ["--metric", "mutual_knn", "-k", "5"]):
        got = []
        for sched in ("none", cluster.client.scheduler.address):
            o = tmp_path / f"c{len(files)}{len(got)}.csv"
            code, out, err = run(["--scheduler", sched, "cka", *paths, *extra, "-o", o], capsys)
            assert code == 0, err
            got.append(o.read_bytes())
        if "rbf" in extra:                               # see test_eval_grid_cells_equal_in_process
            _same_matrix(*([[float(v) for v in line.split(",")[1:]]
                            for line in g.decode().splitlines()[1:]] for g in got), "rbf")
        else:
            assert got[0] == got[1], extra
        files.append(got[0])
    assert len(set(files)) == 3


@pytest.mark.parametrize("kind", ["image", "text"])
def test_cli_embed_on_a_scheduler_equals_in_process(cluster, capsys, tmp_path, kind):
    """Each worker embeds its shard of the batches into its own store; one merge at the end."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from _tiny_models import build_tiny_models
    from test_shard_merge import assert_same_store, write_images

    tiny = build_tiny_models(tmp_path / "tiny")
    if kind == "image":
        d = write_images(tmp_path / "imgs", 11, 4)
        args = ["embed", "image", d, "--encoder", tiny["vit"], "--batch-size", 2]
    else:
        caps = tmp_path / "caps.csv"
        caps.write_text("image,caption\n" + "".join(f"i{k % 6}.jpg,a caption number {k}\n"
                                                    for k in range(15)))
        args = ["embed", "text", caps, "--encoder", tiny["bert"], "--batch-size", 3]
    outs = []
    for sched in ("none", cluster.client.scheduler.address):
        o = tmp_path / f"e{len(outs)}.h5"
        code, out, err = run(["-q", "--scheduler", sched, *args, "-o", f"{o}::/{kind}"], capsys)
        assert code == 0, err
        outs.append(o)
    assert_same_store(outs[0], outs[1])
    assert sorted(p.name for p in tmp_path.glob(".e1.h5*")) == []     # the parts are gone
