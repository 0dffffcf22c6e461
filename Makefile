# Two commands do all set-up: `make run` and `make test`. Both create .venv on first use.
PYTHON3 ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test soak install clean-data screenshots

$(STAMP): pyproject.toml
	$(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Serve on http://127.0.0.1:$${PORT:-8080} with a worker and the scheduler (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set).
run: $(STAMP)
	$(PY) -m app.devserver

## Run the whole test suite against real PostgreSQL and Redis.
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## Screenshots of /events and /metrics at 1280 and 375 px wide, into screenshots/ (needs Chromium).
screenshots: $(STAMP)
	$(PY) -m pytest -q -rs tests/test_browser.py -k screenshots $(PYTEST_ARGS)

## A minute of mixed traffic against gunicorn and a worker: no 5xx, flat memory, bounded connections.
soak: $(STAMP)
	$(PY) -m soak $(SOAK_ARGS)

## Forget the embedded servers' data (events, metrics) kept by `make run`.
clean-data:
	rm -rf .data
