# make demo | make test | make bench-ingest | make bench-profiles | make bench-features | make bench-models | make bench-recs | make bench-audiences | make bench-console | make bench-backtest ARGS="FILE --split DATE" — each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_HOME ?= $(CURDIR)/.cdp/prefect

.PHONY: install demo test bench-ingest bench-profiles bench-attribution bench-features bench-models bench-recs bench-audiences bench-console bench-backtest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cdp demo

# Two test files at a time (a file's tests share its live servers): much of the suite waits on
# servers and subprocesses, so two workers on two cores cut its time by a fifth or more.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

bench-ingest: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.ingest $(ARGS)

bench-profiles: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.profiles $(ARGS)

bench-attribution: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.attribution $(ARGS)

bench-features: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.features $(ARGS)

bench-audiences: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.audiences $(ARGS)

bench-models: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.models $(ARGS)

bench-recs: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.recs $(ARGS)

bench-console: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.console $(ARGS)

bench-backtest: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.backtest $(ARGS)

clean:
	rm -rf $(VENV) .cdp .pytest_cache
