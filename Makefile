# The two set-up commands (see README):
#   make run   - create .venv if missing, install, open the app on the bundled sample folder
#   make test  - create .venv if missing, install the test extras, run the whole suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# The install is redone only when pyproject.toml changes (the stamp is older than it).
STAMP_RUN  := $(VENV)/.stamp-run
STAMP_TEST := $(VENV)/.stamp-test
FOLDER ?= resources/sample_images

.PHONY: run test cli clean-venv bench-quality bench-speed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/python -m imgcluster_gui $(FOLDER)

cli: $(STAMP_RUN)
	$(BIN)/imgcluster cluster $(FOLDER)

test: $(STAMP_TEST)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS)

bench-quality: $(STAMP_TEST)
	$(BIN)/python -m benchmarks.quality

bench-speed: $(STAMP_TEST)
	$(BIN)/python -m benchmarks.speed

clean-venv:
	rm -rf $(VENV)
