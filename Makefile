# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   -> creates .venv if missing, installs, runs `flowjax-fm train` (default task)
#   make test   -> creates .venv if missing, installs, runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)

.PHONY: demo test test-all bench lint clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flowjax-fm train

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadgroup -q --durations=25 --doctest-modules flowjax_fm tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q --doctest-modules flowjax_fm tests

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/ruff check flowjax_fm tests benchmarks
	$(BIN)/ruff format --check flowjax_fm tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info flowjax_fm/couplings/_lap*.so
