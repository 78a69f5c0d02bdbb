# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: run test unit integration e2e bench lint venv clean

$(STAMP): requirements.in requirements-dev.in constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null || \
		{ echo "Python 3.11 is needed (nameko 2 and eventlet are pinned for it): found '$$($(PYTHON) --version 2>&1)'; install python3.11 or run: make PYTHON=python3.11 run"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt \
		-r requirements.in -r requirements-dev.in
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)  ## start the whole mesh (Ctrl-C stops it)
	$(PY) -m shared.mesh run

test: $(STAMP)  ## unit, integration and e2e tests against real servers
	$(PY) -m shared.mesh check
	$(PY) -m pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(PY) -m shared.mesh check
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: $(STAMP)
	$(PY) -m shared.mesh check
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff on everything, mypy on shared/ (pyproject.toml); CI runs it before the tests
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var/log var/db
