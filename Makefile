# heartflow: `make run` and `make test` work on a fresh machine (Python 3.11+, Node.js, Debian's apt).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Reproducible installs: every package pinned by constraints.txt (pyproject.toml holds the ranges).
PIP_INSTALL := $(PIP) install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: setup setup-test run test test-fast test-azure soak bench bench-scale wrk node-deps chromium postgres lock clean help

help:
	@echo "make run    - create .venv, install, run the whole flow locally on the embedded dataset"
	@echo "make test   - install what the tests need (Python, azurite, chromium) and run the suite"
	@echo "make test-fast - unit, contract (Azure fakes, in-memory) and flow-branch tests, no real servers"
	@echo "make test-azure - the live suite on a real workspace (prints its cost estimate first; docs/azure.md)"
	@echo "make soak   - the long lifecycle seasons: 30+ nights with faults at every stage boundary (docs/lifecycle.md)"
	@echo "make bench  - run the sweep, endpoint and whole-run benchmarks (writes docs/benchmarks.md)"
	@echo "make bench-scale - the scale table: 10k, 100k and 1M-row tables, stage times and peak memory (hours on 2 cores)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP_INSTALL) -e ".[test]"
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test node-deps chromium postgres wrk

run: setup
	$(BIN)/heartflow run

# Azurite (the Blob Storage emulator) comes from package.json / package-lock.json.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

node-deps: node_modules/.package-lock.json

# Headless Chromium for the Prefect UI screenshot test (Debian package).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

# PostgreSQL server binaries for the shared-MLflow tests (Debian package; the tests start their own cluster).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi; }

# Two workers (pytest-xdist), a whole test file to a worker at a time so module fixtures start once (the files
# on the shared real Prefect server go together, so it starts once), in the collection's order (tests/conftest.py
# puts slow files first and the Prefect-harness files last).
TEST_WORKERS ?= 2
test: setup-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The flow's logic in about a minute: unit tests, the rollout contract on the Azure fakes and the in-memory
# backend, and every branch of the flow on the in-memory backend under one Prefect test harness. What needs a
# real server, an endpoint host, a fresh interpreter or the type checker is marked `full` and left to `make test`.
# Tests go to the two workers one by one (each worker keeps the collection order: harness tests last).
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load tests/unit tests/contract tests/flow -m "not azure and not full" -q

# The live suite on a real subscription (docs/azure.md): the cost estimate prints before any test starts,
# and the lifecycle test tears down what it created even when a step fails.
test-azure: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m azure tests/integration/azure -v

# The long lifecycle seasons (pytest marker `soak`, deselected by default): a local season of 33 nights through
# the real CLI and an Azure season on the control-plane fakes. Summaries in test-output/lifecycle-*.json.
soak: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/lifecycle -m soak -s

# wrk, the native HTTP load generator of the endpoint benchmark (Debian package).
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; fi; }

# Every figure of docs/benchmarks.md, each a ratio against a baseline measured in the same invocation.
bench: setup-test wrk
	$(BIN)/python bench/sweep.py --write
	$(BIN)/python bench/endpoint.py --write
	$(BIN)/python bench/run.py --grid --profile --write
	$(BIN)/python bench/sweep_wide.py --trials 4 --write docs/benchmarks.md

# The Scale section of docs/benchmarks.md: generated 20-column tables of 10k, 100k and 1M rows (1M with 2 trials),
# wall time per stage and peak memory against the bare loop. Each size is its own invocation and result
# (bench/scale_results.json keeps the latest of each); the 1M row takes hours on 2 cores.
bench-scale: setup-test
	$(BIN)/python bench/scale.py --rows 10000 --write
	$(BIN)/python bench/scale.py --rows 100000 --write
	$(BIN)/python bench/scale.py --rows 1000000 --trials 2 --write

# Refresh constraints.txt from the current environment after changing pyproject.toml.
lock: $(VENV)/.installed-test
	$(PIP) freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) node_modules .heartflow test-output .pytest_cache
