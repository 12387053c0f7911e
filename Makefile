# Two commands do all the set-up on a fresh machine:
#   make run   - install into .venv and start one broker on 127.0.0.1:9092 (data in ./data)
#   make test  - install test deps (and Debian's kcat if missing) and run the whole suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := PYTHONWARNINGS=ignore $(PY) -m pip -q --disable-pip-version-check

.PHONY: run test test-fast test-heavy lint bench bench-quick chaos install install-test kcat podman localstack-env clean

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

# podman + mmdebstrap: tests/stacks/test_image.py builds the Dockerfile without a daemon.
podman:
	@command -v podman >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1 || { \
	  echo "installing Debian's podman and mmdebstrap (needed by the image test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq podman mmdebstrap >/dev/null; }

# LocalStack on the host (localstack/.venv, Python 3.13, bounded by LOCALSTACK_INSTALL_TIMEOUT)
# and the pinned CDK CLI + cdklocal (node_modules) for tests/localstack.
localstack-env: node_modules/.installed
	localstack/host.sh install

node_modules/.installed: package.json package-lock.json
	timeout 600 npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Two lanes in one pytest-xdist run (every worker has its own moto server and shared broker;
# all ports are the OS's choice): the main lane and the heavy lane (chaos, failover, soak,
# the S3 + DynamoDB client matrix, LocalStack) share the workers, the longest tests starting
# first (tests/conftest.py), so the heavy lane's waiting overlaps the main lane's work.
# Both lanes must pass; test-fast and test-heavy run one lane each.
TEST_WORKERS  ?= 6
HEAVY_WORKERS ?= 3
PYTEST_LANE   := $(PY) -m pytest -p no:cacheprovider --dist loadgroup --durations=20

test: install-test kcat podman localstack-env
	$(PYTEST_LANE) -n $(TEST_WORKERS)

test-fast: install-test kcat
	$(PYTEST_LANE) -m "not heavy" -n $(TEST_WORKERS)

test-heavy: install-test kcat podman localstack-env
	$(PYTEST_LANE) -m heavy -n $(HEAVY_WORKERS)

lint: install-test
	$(VENV)/bin/ruff check broker_service stacks functions tests bench
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
