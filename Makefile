# cbench: `make demo` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
TEST_XLA_FLAGS := --xla_force_host_platform_device_count=8
DEMO_DIR ?= demo_out
# pytest-xdist workers: CI has 2 cores (18.8 min serial, 12.9 min with 2).
TEST_WORKERS ?= 2

.PHONY: demo test test-slow test-all clean

$(VENV): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,beam]'
	touch $(VENV)

demo: $(VENV)
	$(PY) -m experiments.demo --workdir=$(DEMO_DIR)

test: $(VENV)
	XLA_FLAGS=$(TEST_XLA_FLAGS) $(PY) -m pytest -m 'not slow' -q -n $(TEST_WORKERS)

test-slow: $(VENV)
	XLA_FLAGS=$(TEST_XLA_FLAGS) $(PY) -m pytest -m 'slow' -q

test-all: $(VENV)
	XLA_FLAGS=$(TEST_XLA_FLAGS) $(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
