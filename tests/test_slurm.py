"""A real single-node SLURM (slurm-wlm + munge, started by ``.ci/slurm.sh``): the job-array
script and the dask-jobqueue example of docs/hpc.md, run as written, give the in-process
results."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _cli import paired_stores

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "hpc.md"


def doc_files() -> dict[str, str]:
    """The code blocks of docs/hpc.md that name a file (``# file: NAME``), by name."""
    out = {}
    for block in re.findall(r"```[a-z]*\n(.*?)```", DOC.read_text(), flags=re.S):
        m = re.search(r"^# file: (\S+)$", block, flags=re.M)
        if m:
            out[m.group(1)] = block
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """slurmctld + slurmd + munged on localhost, private state, free ports; stopped after."""
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch") if not shutil.which(b)]
    if missing:
        pytest.skip(f"SLURM is not installed here ({', '.join(missing)} missing; .ci/run "
                    f"installs slurm-wlm and munge)")
    d = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "FASTCKA_SLURMCTLD_PORT": str(_free_port()),
           "FASTCKA_SLURMD_PORT": str(_free_port())}
    script = ROOT / ".ci" / "slurm.sh"
    subprocess.run(["bash", str(script), "start", str(d)], env=env, check=True, timeout=90)
    try:
        yield {**os.environ, "SLURM_CONF": str(d / "slurm.conf"),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    finally:
        subprocess.run(["bash", str(script), "stop", str(d)], check=False, timeout=60)


def _wait_idle(env, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        q = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
        if not q:
            return
        time.sleep(0.5)
    raise AssertionError(f"jobs still queued after {timeout} s: {q}")


def _diagnostics(env, work) -> str:
    """What SLURM and the worker jobs said (for a failure message)."""
    q = subprocess.run(["squeue", "-o", "%i %j %T %R"], env=env, capture_output=True,
                       text=True).stdout
    logs = "".join(f"\n--- {p.name}\n" + p.read_text()[-1500:]
                   for p in sorted(Path(work).glob("slurm-*.out")))
    return f"\nsqueue:\n{q}{logs}"


def test_job_array_of_retrieve_shards_then_merge(slurm, tmp_path):
    files = doc_files()
    work = tmp_path / "work"
    work.mkdir()
    src, tgt = paired_stores(work)[:2]
    for name in ("retrieve-array.sh", "submit.sh"):
        (work / name).write_text(files[name])
    args = "--seeds 15 --block 16"
    env = {**slurm, "SRC": str(src), "TGT": str(tgt), "ARGS": args}
    # the unsharded in-process run
    subprocess.run(["fastcka", "retrieve", str(src), str(tgt), *args.split(), "-o",
                    str(work / "unsharded.csv")], env=env, check=True, capture_output=True)
    sub = subprocess.run(["bash", "submit.sh"], cwd=work, env=env, check=True,
                         capture_output=True, text=True)
    assert len(sub.stdout.split()) == 2, sub.stdout          # two job ids: the array, the merge
    _wait_idle(env)
    logs = "\n".join(p.read_text() for p in sorted(work.glob("*.log")))
    assert sorted(p.name for p in work.glob("part-*.h5")) == [f"part-{i}.h5" for i in range(4)]
    assert (work / "ranks.csv").exists(), logs
    assert (work / "ranks.csv").read_bytes() == (work / "unsharded.csv").read_bytes()
    # the array ran as 4 SLURM tasks (one log each) and the merge as its own job
    assert len(list(work.glob("retrieve-*_*.log"))) == 4


def test_slurmcluster_with_two_jobs_runs_faq_restarts(slurm, tmp_path, monkeypatch):
    files = doc_files()
    work = tmp_path / "work"
    work.mkdir()
    src, tgt = paired_stores(work)[:2]
    (work / "jobqueue.yaml").write_text(files["jobqueue.yaml"])
    (work / "faq_on_slurm.py").write_text(files["faq_on_slurm.py"])
    run = subprocess.Popen([sys.executable, "faq_on_slurm.py", str(src), str(tgt), "24"],
                           cwd=work, env=slurm, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    # while it runs, SLURM holds the two worker jobs
    seen = 0
    deadline = time.time() + 240
    while run.poll() is None and time.time() < deadline:
        q = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%j"], env=slurm,
                           capture_output=True, text=True).stdout.split()
        seen = max(seen, len(q))
        time.sleep(0.3)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err[-2000:] + _diagnostics(slurm, work)
    assert "same as in-process" in out
    assert seen == 2, f"{seen} SLURM jobs seen running"
    _wait_idle(slurm, 60)


def test_cli_scheduler_slurm_match_equals_in_process(slurm, tmp_path):
    import json

    files = doc_files()
    work = tmp_path / "work"
    work.mkdir()
    src, tgt = paired_stores(work)[:2]
    (work / "jobqueue.yaml").write_text(files["jobqueue.yaml"])
    argv = ["match", str(src), str(tgt), "--seeds", "15", "--queries", "30", "--n-init", "6",
            "--seed", "3", "--device", "cpu", "--json"]
    res = []
    for pre in ([], ["--scheduler", "slurm", "--jobs", "2", "--cluster-config",
                     "jobqueue.yaml"]):
        p = subprocess.run(["fastcka", *pre, *argv], cwd=work, env=slurm, capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:] + _diagnostics(slurm, work)
        r = json.loads(p.stdout)
        res.append((r["objective"], r["accuracy"], r["objective_spread"]))
    assert res[0] == res[1]
    assert np.isfinite(res[0][0])
    _wait_idle(slurm, 60)


def test_job_array_of_cka_shards_then_merge(slurm, tmp_path):
    """docs/hpc.md's cka-array.sh as written (3 array tasks instead of 8), then merge."""
    from test_shard_merge import matrix_stores

    work = tmp_path / "work"
    work.mkdir()
    matrix_stores(work, prefix="enc-")
    (work / "cka-array.sh").write_text(doc_files()["cka-array.sh"])
    subprocess.run(["sbatch", "--wait", "--array=0-2", "cka-array.sh"], cwd=work, env=slurm,
                   check=True, capture_output=True, text=True, timeout=240)
    parts = sorted(p.name for p in work.glob("cka-part-*.h5"))
    assert parts == [f"cka-part-{i}.h5" for i in range(3)], _diagnostics(slurm, work)
    for cmd in ("fastcka cka enc-*.h5 --kernel rbf -o unsharded.csv",
                "fastcka merge cka-part-*.h5 -o cka.csv"):
        subprocess.run(["bash", "-c", cmd], cwd=work, env=slurm, check=True, timeout=120)
    assert (work / "cka.csv").read_bytes() == (work / "unsharded.csv").read_bytes()
    assert len(list(work.glob("cka-*_*.log"))) == 3
    _wait_idle(slurm, 60)
