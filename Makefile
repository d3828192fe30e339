# Two commands do all the set-up: `make demo` and `make test`. Both build their venvs from the
# machine's python3 alone, with uv (installed from PyPI into the venv) and the pinned lock files.
#
# Each supported Airflow line has its own lock file and venv: .venv for 3.3 (development, ruff,
# mypy, the demo) and .venv-2.11 for 2.11. `make test` lints and type-checks once and runs the whole
# pytest suite on both lines, its parts side by side; `make pytest AIRFLOW_LINE=2.11` (or
# `make test-2.11`) runs one line alone.
PYTHON ?= python3
UV_VERSION := 0.13.9
AIRFLOW_LINES := 3.3 2.11
AIRFLOW_LINE ?= 3.3
VENV_3.3 := .venv
VENV_2.11 := .venv-2.11
VENV := $(VENV_$(AIRFLOW_LINE))
ifeq ($(VENV),)
$(error AIRFLOW_LINE must be one of: $(AIRFLOW_LINES); got '$(AIRFLOW_LINE)')
endif
BIN := $(VENV)/bin
LOCK := requirements/airflow-$(AIRFLOW_LINE).txt
STAMP := $(VENV)/.installed-$(AIRFLOW_LINE)

.PHONY: venv venvs test pytest $(addprefix test-,$(AIRFLOW_LINES)) lint typecheck unit demo bench docs dist lock clean \
	test-browser browser-pytest $(addprefix browser-,$(AIRFLOW_LINES)) screenshots test-celery celery-pytest

venv: $(STAMP)

# --compile-bytecode writes every dependency's .pyc at install time, as pip does and uv does not by
# default. Without it a machine with PYTHONDONTWRITEBYTECODE set (this one has it) compiles Airflow
# from source in every process: `import airflow` costs 6.2 s of CPU instead of 2.4, one `airflow dags
# test` 21 s instead of 15 (measured on a 2-core machine). The compilation costs about 25 s once.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r $(LOCK)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

# The shared rate limit's tests start Debian's redis-server (scripts/install_redis.sh installs it with
# apt when missing, as scripts/install_chromium.sh does for the browser tests).
unit: venv
	scripts/install_redis.sh
	$(BIN)/pytest -m "not integration"

# The whole suite (unit, sandbox, end-to-end `airflow dags test`, Connections UI) on one Airflow line;
# PYTEST_ARGS narrows it (e.g. PYTEST_ARGS='-m integration').
pytest: venv
	scripts/install_redis.sh
	$(BIN)/pytest $(PYTEST_ARGS)

$(addprefix test-,$(AIRFLOW_LINES)): test-%:
	$(MAKE) --no-print-directory pytest AIRFLOW_LINE=$*

# Each line's suite in three parts, so that `make test` can keep both cores busy to the end: the unit
# tests, and the end-to-end tests (real Airflow runs, marked `integration`) in two halves of about the
# same CPU time. The first half is the files listed here (the real deployments: scheduler, DAG
# processor, triggerer; the first hour), the second every other integration test, so that a new test
# file always runs. The tests that share the session's API server (`airflow_api_server`) stay in one
# half, which starts it once. `make test-2.11-unit`, `make test-3.3-integration-2`, ... run one part.
INTEGRATION_HALF := $(addprefix tests/integration/,test_hitl_bridge.py test_scheduler_callbacks.py \
	test_first_hour.py test_bulk.py test_cli.py test_token_leak.py)
$(addprefix test-,$(addsuffix -unit,$(AIRFLOW_LINES))): test-%-unit:
	$(MAKE) --no-print-directory pytest AIRFLOW_LINE=$* PYTEST_ARGS='-m "not integration"'
$(addprefix test-,$(addsuffix -integration-1,$(AIRFLOW_LINES))): test-%-integration-1:
	$(MAKE) --no-print-directory pytest AIRFLOW_LINE=$* PYTEST_ARGS='-m integration $(INTEGRATION_HALF)'
$(addprefix test-,$(addsuffix -integration-2,$(AIRFLOW_LINES))): test-%-integration-2:
	$(MAKE) --no-print-directory pytest AIRFLOW_LINE=$* \
		PYTEST_ARGS='-m integration $(addprefix --ignore=,$(INTEGRATION_HALF))'
$(addprefix test-,$(addsuffix -integration,$(AIRFLOW_LINES))): test-%-integration:
	$(MAKE) --no-print-directory pytest AIRFLOW_LINE=$* PYTEST_ARGS='-m integration'

# Both lines' venvs, built one after the other before the jobs that share them start side by side.
venvs:
	$(foreach line,$(AIRFLOW_LINES),$(MAKE) --no-print-directory venv AIRFLOW_LINE=$(line) &&) true

# The jobs of `make test`, ruff first (seconds: a style error fails at once), then longest first
# (wall times in a fresh clone's .ci/run on a 2-core machine, three jobs at once: 3.3's integration
# halves 5.7 and 8.0 min, 2.11's 2.4 and 3.6, the unit tests 3.5 (3.3) and 2.3 (2.11)), so that the short ones
# fill the cores at the end. Their tests are independent: own venvs, throwaway AIRFLOW_HOMEs, free
# ports. --output-sync prints each job's log in one piece when it ends. Three at once on two cores
# (TEST_JOBS_AT_ONCE): every job waits part of its time (schedulers' loops, task retries, deadlines
# and sleeps in the unit tests), and a third job fills those waits; TEST_JOBS_AT_ONCE=1 runs them one
# after another. TEST_ALSO adds targets to the same pool, after the tests: .ci/run adds docs, dist
# and demo, which take the cores that the last test jobs leave free.
TEST_JOBS := lint test-3.3-integration-1 test-3.3-integration-2 test-2.11-integration-1 \
	test-2.11-integration-2 test-2.11-unit test-3.3-unit typecheck
.PHONY: $(TEST_JOBS) $(foreach line,$(AIRFLOW_LINES),test-$(line)-integration)
TEST_JOBS_AT_ONCE ?= 3
TEST_ALSO ?=
test: venvs
	scripts/install_redis.sh
	$(MAKE) --no-print-directory -j$(TEST_JOBS_AT_ONCE) --output-sync=target $(TEST_JOBS) $(TEST_ALSO)

# The real-browser tests (tests/browser, marked `browser`, left out of `make test`): the sandbox's web
# inbox, and the Connections form of a running Airflow on each line. A headless Chromium from the
# distribution's packages drives them (scripts/install_chromium.sh installs it with apt when missing);
# both lines run side by side (LINE_JOBS=1: one after the other).
LINE_JOBS ?= 2
BROWSER_TESTS_3.3 := tests/browser
BROWSER_TESTS_2.11 := tests/browser/test_connections_form.py
test-browser:
	scripts/install_chromium.sh
	$(MAKE) --no-print-directory -j$(LINE_JOBS) --output-sync=target $(addprefix browser-,$(AIRFLOW_LINES))

browser-pytest: venv
	$(BIN)/pytest --browser $(BROWSER_TESTS_$(AIRFLOW_LINE))

$(addprefix browser-,$(AIRFLOW_LINES)): browser-%:
	$(MAKE) --no-print-directory browser-pytest AIRFLOW_LINE=$*

# The CeleryExecutor tests (tests/celery, marked `celery`, left out of `make test`), on the 3.3 line: one
# deployment as Airflow's docker-compose quick start runs it, without the containers (Debian's redis-server
# and PostgreSQL, installed with apt when missing by scripts/install_celery_services.sh; the API server,
# scheduler, DAG processor, triggerer and two Celery workers from the venv), against the sandbox at 300
# requests/s. It prints its figures (messages, 429s, share of the limit, the retry after a worker is killed).
test-celery:
	scripts/install_celery_services.sh
	$(MAKE) --no-print-directory celery-pytest AIRFLOW_LINE=3.3

celery-pytest: venv
	$(BIN)/pytest --celery tests/celery

# Regenerate the pictures in docs/images/ (the inbox, the Connections form) by running the browser tests.
screenshots:
	CALLBELL_SCREENSHOTS=$(CURDIR)/docs/images $(MAKE) --no-print-directory test-browser

demo: venv
	$(BIN)/python scripts/demo.py

bench: venv
	$(BIN)/python benchmarks/run.py

# The documentation site (Sphinx, Markdown pages with MyST) into docs/_build/html, offline. Warnings are
# errors (-W, after the whole build: --keep-going) and every cross-reference must resolve (-n). A rebuild
# is incremental; `make clean` starts over.
SPHINXOPTS := -W --keep-going -n -q
docs: venv
	$(BIN)/sphinx-build -b html $(SPHINXOPTS) docs docs/_build/html

# Build the sdist and wheel into dist/, `twine check --strict` them, install the wheel into a fresh
# venv per Airflow line with that Airflow from PyPI and nothing else, and check that
# `airflow providers list` shows this version.
dist: venv
	rm -rf dist
	$(BIN)/python scripts/check_dist.py --outdir dist

# Re-pin every dependency of one line (needs the network to PyPI); commit the result.
# `make lock AIRFLOW_LINE=2.11` for the other line.
lock:
	test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"; }
	$(BIN)/uv pip compile --quiet --universal --python-version 3.10 --group dev \
		pyproject.toml requirements/airflow-$(AIRFLOW_LINE).in -o $(LOCK)

clean:
	rm -rf $(foreach line,$(AIRFLOW_LINES),$(VENV_$(line))) .mypy_cache .ruff_cache .pytest_cache .demo dist docs/_build
