# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: lock run test faults fuzz unit integration e2e browser browsers bench lint venv clean

$(STAMP): pyproject.toml requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null || \
		{ echo "Python 3.11 is needed (nameko 2 and eventlet are pinned for it): found '$$($(PYTHON) --version 2>&1)'; install python3.11 or run: make PYTHON=python3.11 run"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)  ## start the whole mesh (Ctrl-C stops it)
	$(PY) -m ops.mesh run

test: $(STAMP) browsers  ## unit, integration, e2e and browser tests against real servers
	$(PY) -m ops.mesh check
	$(PY) -m pytest -m "not faults and not fuzz" $(PYTEST_ARGS)

faults: $(STAMP)  ## the fault layer: outages, RabbitMQ/Redis clusters, SIGKILLed replicas
	$(PY) -m ops.mesh check
	$(PY) -m pytest -m faults $(PYTEST_ARGS)

fuzz: $(STAMP)  ## the fuzz layer: the gateway fuzzed from its OpenAPI document (schemathesis)
	$(PY) -m ops.mesh check
	$(PY) -m pytest -m fuzz $(PYTEST_ARGS)

browsers:  ## Debian's Chromium and its driver for tests/browser (installed once)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

browser: $(STAMP) browsers
	$(PY) -m ops.mesh check
	$(PY) -m pytest tests/browser $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(PY) -m ops.mesh check
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: $(STAMP)
	$(PY) -m ops.mesh check
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff on everything, mypy on shared/, ops/ and the services (pyproject.toml); CI runs it before the tests
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

lock:  ## re-resolve the locks from pyproject.toml (keeps current pins; needs uv: pip install uv)
	uv pip compile pyproject.toml --python-version 3.11 --generate-hashes \
		--custom-compile-command "make lock" -o requirements.lock
	uv pip compile pyproject.toml --python-version 3.11 --extra local --extra dev --generate-hashes \
		--custom-compile-command "make lock" -o requirements-dev.lock

clean:
	rm -rf $(VENV) var/log var/db
