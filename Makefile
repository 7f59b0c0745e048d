# Entry points: `make demo`, `make test` and `make bench`. Each creates .venv on first use.
# `make test` runs the fast suite (under 2 minutes on 2 cores); `CI=true make test` runs all.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tierscan demo

# Locally the fast suite (tests marked slow left out); with CI=true, everything. Two workers
# (pytest-xdist): the suite is CPU-bound and runs on 2-core machines.
PYTEST_SELECT := $(if $(filter true,$(CI)),,-m "not slow")
PYTEST_JOBS   ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_JOBS) $(PYTEST_SELECT)

# every benchmark, one table of figure, goal, measured, ratio (benchmarks/README.md);
# `make bench BENCH_ARGS=--quick` measures every figure at a smaller scale (~5 min of CPU)
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
