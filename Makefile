# Two commands do all the set-up: `make demo` and `make test`. Both build .venv from the machine's
# python3 alone, with uv (installed from PyPI into the venv) and the pinned lock file.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
AIRFLOW_LINE := 3.3
LOCK := requirements/airflow-$(AIRFLOW_LINE).txt
STAMP := $(VENV)/.installed-$(AIRFLOW_LINE)

.PHONY: venv test lint typecheck unit demo bench lock clean

venv: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r $(LOCK)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -m "not integration"

test: lint typecheck venv
	$(BIN)/pytest

demo: venv
	$(BIN)/python scripts/demo.py

bench: venv
	$(BIN)/python benchmarks/run.py

# Re-pin every dependency (needs the network to PyPI); commit the result.
lock:
	test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"; }
	$(BIN)/uv pip compile --quiet --universal --python-version 3.10 --group dev \
		pyproject.toml requirements/airflow-$(AIRFLOW_LINE).in -o $(LOCK)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .demo
