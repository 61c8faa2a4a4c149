# The two set-up commands (see README):
#   make run   - create .venv if missing, install, open the app on the bundled sample folder
#   make test  - create .venv if missing, install the test extras, run the whole suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# The install is redone only when pyproject.toml changes (the stamp is older than it).
STAMP_RUN  := $(VENV)/.stamp-run
STAMP_TEST := $(VENV)/.stamp-test
STAMP_BENCH := $(VENV)/.stamp-bench
STAMP_PREPARED := $(VENV)/.stamp-prepared
FOLDER ?= resources/sample_images

.PHONY: run test lint cli clean-venv bench-quality bench-speed bench-deep bench-app bench-graph bundle bundle-with-venv bundle-smoke

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# After an install, the default backbones are converted for the fast CPU engine (seconds, once per install), so the
# first run on the sample folder does not pay it (benchmarks/results/speed.md: 14.7 s -> 7.9 s of extraction).
# A failure (no OpenVINO) only means runs use the eager network.
$(STAMP_PREPARED): $(STAMP_RUN)
	-$(BIN)/imgcluster prepare
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(STAMP_RUN)

$(STAMP_BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $@ $(STAMP_TEST) $(STAMP_RUN)

run: $(STAMP_PREPARED)
	$(BIN)/python -m imgcluster_gui $(FOLDER)

cli: $(STAMP_RUN)
	$(BIN)/imgcluster cluster $(FOLDER)

# The guardrails run first (seconds), then the suite. The checks without torchvision start a fresh interpreter
# (subprocess) and run first, in a pytest process of their own: started from the suite's process after every core
# test had run, that start crashed the whole run (a segfault in the parent, 2026-12-04; alone they pass).
ISOLATED_TESTS := tests/core/test_torchvision_optional.py
test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q $(ISOLATED_TESTS)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest --ignore=$(ISOLATED_TESTS) $(PYTEST_ARGS)

# Guardrails: layering (core never imports Qt; cli never imports ui), lint, formatting, types of core/.
lint: $(STAMP_TEST)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check imgcluster_gui tests benchmarks tools
	$(BIN)/ruff format --check imgcluster_gui tests benchmarks tools
	$(BIN)/mypy

bench-quality: $(STAMP_BENCH)
	$(BIN)/python -m benchmarks.quality

bench-speed: $(STAMP_BENCH)
	$(BIN)/python -m benchmarks.speed

bench-deep: $(STAMP_BENCH)
	$(BIN)/python -m benchmarks.deep

bench-app: $(STAMP_BENCH)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m benchmarks.app_grid

bench-graph: $(STAMP_BENCH)
	$(BIN)/python -m benchmarks.graph_scale

# The desktop bundle (packaging/README.md): its own build venv with CPU-only torch (the CUDA wheels would add
# gigabytes), the app (editable) with its `raw` and `bundle` extras, then PyInstaller -> dist/imgcluster/.
BUNDLE_VENV := build/bundle-venv
TORCH_CPU ?= torch torchvision --index-url https://download.pytorch.org/whl/cpu
PYINSTALLER_ARGS := packaging/imgcluster.spec --noconfirm --distpath dist --workpath build/pyinstaller

# The app goes in with --no-deps and its other dependencies from packaging/bundle_requirements.py (pyproject's list
# without torch/torchvision, torch held to TORCH_CPU's build by a constraints file): otherwise pip would resolve
# torchvision from PyPI, a CUDA build that pulls a CUDA torch. Where TORCH_CPU has torchvision, it is bundled.
$(BUNDLE_VENV)/.stamp: pyproject.toml packaging/bundle_requirements.py
	$(PYTHON) -m venv $(BUNDLE_VENV)
	$(BUNDLE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BUNDLE_VENV)/bin/python -m pip install --quiet $(TORCH_CPU)
	$(BUNDLE_VENV)/bin/python packaging/bundle_requirements.py build/bundle-requirements.txt build/bundle-constraints.txt raw bundle
	$(BUNDLE_VENV)/bin/python -m pip install --quiet -r build/bundle-requirements.txt -c build/bundle-constraints.txt
	$(BUNDLE_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

bundle: $(BUNDLE_VENV)/.stamp
	$(BUNDLE_VENV)/bin/pyinstaller $(PYINSTALLER_ARGS)
	@du -sh dist/imgcluster

# Bundles .venv's own torch (a CUDA build: 5 GB). Rarely needed now: `make bundle` also works with a CPU torch
# alone (TORCH_CPU=<wheel>; the bundle then lacks the torchvision backbones, packaging/README.md).
bundle-with-venv: $(STAMP_RUN)
	$(BIN)/python -m pip install --quiet -e ".[raw,bundle]"
	$(BIN)/pyinstaller $(PYINSTALLER_ARGS)
	@du -sh dist/imgcluster

# Runs the built app offscreen on the sample folder: it must start, cluster and exit 0 (not in `make test`: slow).
bundle-smoke:
	$(PYTHON) packaging/smoke.py

clean-venv:
	rm -rf $(VENV)
