# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Both create .venv and install the project (with its pinned-by-range dependencies) on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench install clean

$(BIN)/automator: pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/automator

install: $(BIN)/automator

# The main job: check the example project and its rule tests, then run the daemon on it with every outside
# system emulated locally (Ctrl-C stops it cleanly). PORT=8081 make run to use another port.
PORT ?= 8080
run: install
	$(BIN)/automator validate .
	$(BIN)/automator test rules/
	$(BIN)/automator run --sandbox --port $(PORT)

test: install
	$(BIN)/python -m pytest
	$(BIN)/automator test rules/
	$(BIN)/automator test rules/ --sandbox

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) *.egg-info
