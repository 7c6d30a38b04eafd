# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Both create .venv and install the project (with its pinned-by-range dependencies) on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench install clean

$(BIN)/automator: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/automator

install: $(BIN)/automator

# The main job. Until the daemon lands (`automator run`), it proves the example rules with their
# tests and shows what one example event would do.
run: install
	$(BIN)/automator validate .
	$(BIN)/automator test rules/
	$(BIN)/automator dry-run --event examples/booking-arrived.yaml --state examples/state.yaml --at 2026-03-02T15:05:00+03:00

test: install
	$(BIN)/python -m pytest
	$(BIN)/automator test rules/

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) *.egg-info
