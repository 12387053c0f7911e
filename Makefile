# Two commands do all the set-up on a fresh machine:
#   make run   - install into .venv and start one broker on 127.0.0.1:9092 (data in ./data)
#   make test  - install test deps (and Debian's kcat if missing) and run the whole suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := PYTHONWARNINGS=ignore $(PY) -m pip -q --disable-pip-version-check

.PHONY: run test test-fast lint bench bench-quick chaos install install-test kcat localstack-env clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install -e '.[test,dev]'
	@touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(PY) -m broker_service serve --host 127.0.0.1 --port 9092 --data-dir data

kcat:
	@command -v kcat >/dev/null 2>&1 || { \
	  echo "installing Debian's kcat (needed by the kcat tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq kcat >/dev/null; }

# LocalStack on the host (localstack/.venv, Python 3.13, bounded by LOCALSTACK_INSTALL_TIMEOUT)
# and the pinned CDK CLI + cdklocal (node_modules) for tests/localstack.
localstack-env: node_modules/.installed
	localstack/host.sh install

node_modules/.installed: package.json package-lock.json
	timeout 600 npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: install-test kcat localstack-env
	$(PY) -m pytest

test-fast: install-test kcat
	$(PY) -m pytest -m "not slow"

lint: install-test
	$(VENV)/bin/ruff check broker_service tests bench
	$(VENV)/bin/mypy

# the benchmark suite (bench/suite.py): every scenario, tables, JSON and plots in bench/results/
bench: install-test
	$(PY) bench/suite.py

bench-quick: install-test
	$(PY) bench/suite.py --quick

# the kill loop for long runs (the chaos test lane runs 20 cycles per backend):
# CYCLES=N cycles per backend, BACKENDS=embedded,cloud; exit 1 if anything is lost/duplicated
CYCLES   ?= 100
BACKENDS ?= embedded,cloud
chaos: install-test
	$(PY) bench/chaos.py --backend $(BACKENDS) --cycles $(CYCLES)

clean:
	rm -rf $(VENV) data .pytest_cache localstack/.venv localstack/.state
