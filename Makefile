# Quick start: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: run test install install-dev bench clean viewer

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	@touch $@

# torch==2.13.0 is pinned exactly so pip takes the CPU wheel, never a CUDA build.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q 'torch==2.13.0' || echo "torch 2.13.0 not installable here: torch backend tests will be skipped"
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The prebuilt OHIF Viewer from the npm registry (about 50 MB after pruning) into viewer/ohif_dist/,
# served at /ohif/. Without npm everything else still works and /ohif/ says how to install it.
viewer: $(VENV)/.installed
	$(BIN)/python -m viewer.ohif_fetch || echo "make viewer: the OHIF Viewer is not installed (reason above); the rest of telerad works without it"

# Demo accounts (one per role) are created on the first run; their passwords are printed once.
run: $(VENV)/.installed viewer
	$(BIN)/telerad user demo --config config/demo.toml
	$(BIN)/telerad serve --config config/demo.toml --load-samples

test: $(VENV)/.installed-dev viewer
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_receive.py
	$(BIN)/python benchmarks/bench_triage.py
	$(BIN)/python benchmarks/bench_route.py
	$(BIN)/python benchmarks/bench_dicomweb.py
	$(BIN)/python benchmarks/bench_scale.py

clean:
	rm -rf var .pytest_cache
