# Two commands set everything up from a fresh clone:
#   make demo   builds .venv (scheduler + dbt) and runs the example job through the scheduler
#   make test   builds .venv (+ test tools) and runs lint and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: demo test lint bench venv compile clean docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: pip runs again only when a requirements file changed.
$(VENV)/.runtime: $(BIN)/python requirements.txt requirements-dbt.txt
	$(PIP) -r requirements.txt -r requirements-dbt.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

# Byte-compile lib/ explicitly: where PYTHONDONTWRITEBYTECODE is set, every start would
# otherwise recompile it (~80 ms of each run-now and daemon start, bench/overhead.py).
compile: $(VENV)/.runtime
	$(BIN)/python -m compileall -q lib scheduler.py

venv: $(VENV)/.runtime compile

demo: $(VENV)/.runtime compile
	$(BIN)/python scheduler.py --config jobs.yaml validate
	$(BIN)/python scheduler.py --config jobs.yaml run-now example
	$(BIN)/python scheduler.py --config jobs.yaml status

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.dev
	$(BIN)/ruff check .
	bash scripts/install_test_tools.sh
	bash tests/run_pytest.sh $(BIN)/python

# The jobs.yaml reference tables in README.md and jobs.schema.json come from the key
# table (lib/config/keys.py); tests/test_config_keys.py fails when they are stale.
docs: $(VENV)/.runtime
	$(BIN)/python -m lib.config.reference --write
	$(BIN)/python scheduler.py schema > jobs.schema.json

bench: $(VENV)/.runtime
	bash bench/run_all.sh

clean:
	rm -rf $(VENV) state .pytest_cache .ruff_cache
