# Two commands set everything up from a fresh clone:
#   make demo   builds .venv (scheduler + dbt) and runs the example job through the scheduler
#   make test   builds .venv (+ test tools) and runs lint and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: demo test lint bench venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: pip runs again only when a requirements file changed.
$(VENV)/.runtime: $(BIN)/python requirements.txt requirements-dbt.txt
	$(PIP) -r requirements.txt -r requirements-dbt.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/python scheduler.py --config jobs.yaml validate
	$(BIN)/python scheduler.py --config jobs.yaml run-now example
	$(BIN)/python scheduler.py --config jobs.yaml status

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.dev
	$(BIN)/ruff check .
	bash scripts/install_podman.sh
	bash tests/run_pytest.sh $(BIN)/python

bench: $(VENV)/.runtime
	bash bench/run_all.sh

clean:
	rm -rf $(VENV) state .pytest_cache .ruff_cache
