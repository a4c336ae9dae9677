"""Every Numba CUDA kernel compiles natively (to PTX for sm_90, the H100/H200).

The simulator (NUMBA_ENABLE_CUDASIM=1) that runs the kernels in the normal test run accepts code
a real GPU rejects (e.g. a shared-array shape that is not a compile-time constant).  Numba's
``cuda.compile_ptx`` runs the real CUDA type inference and NVVM code generation without a GPU,
so this catches such errors on CPU-only machines.  It needs libNVVM and NVRTC (the pip packages
``nvidia-cuda-nvcc-cu12`` and ``nvidia-cuda-nvrtc-cu12`` of the ``test`` extra) and runs in a
subprocess because this process already imported Numba with the simulator.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(r"""
    import sys
    from numba import cuda, types as t
    try:
        cuda.compile_ptx(lambda a: None, (t.float64[::1],), cc=(9, 0))
    except Exception as exc:  # no libNVVM / NVRTC here
        print("SKIP", type(exc).__name__, str(exc).splitlines()[0][:200])
        sys.exit(0)
    from fastcka.kernels import auction_cuda, lap_cuda, local_cka_cuda

    f64, i64, i8, i32 = t.float64, t.int64, t.int8, t.int32
    def arr(dt, nd, layout="C"):
        return t.Array(dt, nd, layout)

    jobs = []
    for tpb in sorted({lap_cuda._threads_for(n) for n in (8, 300, 5000)}):
        for cdt in (f64, t.float32):
            jobs.append((f"lap_cuda.sap[tpb={tpb},{cdt}]", lap_cuda._kernel(tpb),
                         (arr(cdt, 3), f64, arr(f64, 2), arr(f64, 2), arr(i64, 2), arr(i64, 2),
                          arr(f64, 2), arr(i64, 2), arr(i64, 2), arr(i8, 2), arr(i8, 2),
                          arr(i64, 2), arr(i8, 1))))
    bid, claim, assign, reset = auction_cuda._kernels(auction_cuda._TPB)
    for cdt in (f64, t.float32):
        jobs.append((f"auction_cuda.bid[{cdt}]", bid,
                     (arr(cdt, 3), f64, arr(f64, 2), arr(i64, 2), arr(i64, 2), arr(f64, 2),
                      arr(f64, 2), f64)))
    jobs.append(("auction_cuda.claim", claim, (arr(i64, 2), arr(f64, 2), arr(f64, 2), arr(i64, 2))))
    jobs.append(("auction_cuda.assign", assign,
                 (arr(f64, 2), arr(i64, 2), arr(i64, 2), arr(f64, 2), arr(i64, 2), arr(i32, 1))))
    jobs.append(("auction_cuda.reset", reset,
                 (arr(i64, 2), arr(i64, 2), arr(f64, 2), arr(i64, 2), arr(i32, 1))))
    median_merge, rbf_rowsum = local_cka_cuda._build()
    for lay in ("C", "A"):
        jobs.append((f"local_cka_cuda.median_merge[{lay}]", median_merge,
                     (arr(f64, 1, lay), arr(f64, 2, lay), arr(i64, 1, lay), arr(f64, 1))))
        jobs.append((f"local_cka_cuda.rbf_rowsum[{lay}]", rbf_rowsum,
                     (arr(f64, 2, lay), arr(f64, 1, lay), arr(f64, 2), arr(f64, 2))))
    bad = 0
    for name, kern, sig in jobs:
        try:
            ptx, _ = cuda.compile_ptx(kern.py_func, sig, cc=(9, 0))
            assert ".entry" in ptx or ".visible" in ptx
            print("OK", name)
        except Exception as exc:
            bad += 1
            print("FAIL", name, type(exc).__name__, " ".join(str(exc).split())[:400])
    sys.exit(1 if bad else 0)
""")


@pytest.mark.slow
def test_all_cuda_kernels_compile_natively():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout + proc.stderr
    if proc.stdout.startswith("SKIP"):
        pytest.skip(f"libNVVM/NVRTC not installed: {proc.stdout.strip()}")
    assert proc.returncode == 0, out
    assert out.count("OK ") >= 13, out
