# Entry points: `make demo`, `make test` and `make bench`. Each creates .venv on first use.
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

test: $(STAMP)
	$(BIN)/python -m pytest

# every benchmark, one table of figure, goal, measured, ratio (benchmarks/README.md)
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_all.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
