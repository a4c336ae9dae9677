#!/usr/bin/env bash
# `make gpu-check`: GPU tests + CPU/GPU agreement + GPU benchmarks, on a machine with a CUDA GPU.
#
# The device machine has Python with torch, cupy-cuda13x, numba-cuda, scipy, h5py and click
# preinstalled and no network: the project is installed without dependencies over what is there.
# Everything lands under $OUT (default bench/results/gpu-run): env.txt, pytest.log, junit.xml,
# agreement.json, *_gpu.md/json from each benchmark, and summary.md.
#
# The shared Flickr8k reference embeddings are read from $FASTCKA_SHARED_DATA (default
# ../shared/data); on the device machine carry a copy (see bench/README.md).
#
#   GPU_CHECK_DRY_RUN=1 bash bench/gpu_check.sh   # on a CPU-only machine: small sizes, simulator
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu-run}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DRY=${GPU_CHECK_DRY_RUN:-0}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg HF_HUB_OFFLINE=1
status=0
step() { echo "=== $* ($(date -u +%H:%M:%S))" | tee -a "$OUT/steps.log"; }

step "environment"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "no nvidia-smi"
  $PY -c "import sys, numpy, scipy, numba; print('python', sys.version.split()[0]); print('numpy', numpy.__version__, 'scipy', scipy.__version__, 'numba', numba.__version__)"
  $PY -c "import cupy; print('cupy', cupy.__version__, 'cuda runtime', cupy.cuda.runtime.runtimeGetVersion()); print('gpu', cupy.cuda.runtime.getDeviceProperties(0)['name'].decode())" 2>&1
  nproc
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ "$DRY" != "1" ]; then
  step "install (no deps, over the preinstalled packages)"
  $PY -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
  export NUMBA_ENABLE_CUDASIM=0
  SIZE=full
  DEV=gpu
else
  export NUMBA_ENABLE_CUDASIM=1
  SIZE=quick
  DEV=cpu
fi

step "pytest -m 'gpu or cudasim'"
timeout ${PYTEST_TIMEOUT:-240} $PY -m pytest -q -m "gpu or cudasim" -p no:cacheprovider \
  --junitxml "$OUT/junit.xml" tests 2>&1 | tee "$OUT/pytest.log" | tail -25
[ "${PIPESTATUS[0]}" = 0 ] || status=1

step "CPU/GPU agreement"
timeout 240 $PY bench/gpu_agreement.py --out "$OUT" --size "$SIZE" --device "$DEV" 2>&1 | tee "$OUT/agreement.log" | tail -30
[ "${PIPESTATUS[0]}" = 0 ] || status=1

# GPU_BENCHES picks the benchmarks (default: all three full ones, plus the q=20k local-CKA
# streaming run on GPU and CPU with the same inputs).
for b in ${GPU_BENCHES:-cka qap local_cka local_large}; do
  step "bench $b"
  if [ "$b" = local_large ]; then
    q=20000; p=1000; [ "$DRY" = "1" ] && { q=2000; p=100; }
    for kern in linear rbf; do
      for dev in $DEV cpu; do
        timeout ${BENCH_TIMEOUT:-240} $PY bench/local_cka.py --_child --device $dev --q $q --p $p \
          --kernel $kern --sigma base > "$OUT/local_large_${kern}_${dev}.json" 2>> "$OUT/bench_local_large.log" || status=1
        echo "$kern $dev: $(cat "$OUT/local_large_${kern}_${dev}.json")"
        [ "$dev" = cpu ] && [ "$DEV" = cpu ] && break
      done
    done
    continue
  fi
  if [ "$DRY" = "1" ]; then args="--quick --device cpu"; else args="--device gpu"; fi
  timeout ${BENCH_TIMEOUT:-240} $PY bench/$b.py $args --out "$OUT" 2>&1 | tee "$OUT/bench_$b.log" | tail -25
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
done

step "summary"
$PY bench/gpu_summary.py "$OUT" > "$OUT/summary.md" 2>&1 || status=1
cat "$OUT/summary.md"
step "done status=$status"
exit $status
