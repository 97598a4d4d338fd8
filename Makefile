# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

# Tests run in parallel (pytest-xdist), one worker per core (at most 4), each test module on one worker
# so that its module-scoped models are trained once; the session's models are shared.
PYTEST_PARALLEL := -n auto --maxprocesses 4 --dist loadfile

.PHONY: demo test test-slow test-all venv bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/audit demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_PARALLEL)

# The heavy cases kept out of `make test` (marked `slow`), alone.
test-slow: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_PARALLEL) -m slow

# Everything: `make test` and the heavy cases.
test-all: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_PARALLEL) -m ''

bench: $(STAMP)
	$(PY) benchmarks/bench_unlearning.py
	$(PY) benchmarks/bench_attacks.py

clean:
	rm -rf $(VENV) audit-out demo-out .pytest_cache
