# Two commands do all set-up: `make run` and `make test`. Both create .venv on first use.
# Beside a running `make run`, `make cli ARGS=...` and `make psql` reach its servers (their addresses: RUN_ENV).
# `make bench` measures the service beside its references (see docs/performance.md);
# `make bench-scale` measures it at 20 million events over 64 day partitions (docs/storage.md).
# `make mutate` runs mutation testing and writes tests/MUTATION.md (see docs/performance.md, "How we test").
PYTHON3 ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-installed-stamp
MUTATE_STAMP := $(VENV)/.mutate-installed-stamp
# Where `make run` writes its servers' addresses (DATABASE_URL, REDIS_URL, PORT) while it runs, for `make cli` and
# `make psql` in another terminal. Exported, so that the launcher writes where they read.
export RUN_ENV ?= .data/run.env
# A recipe's first step: the run file's addresses over the caller's environment, when `make run` is running.
FROM_RUN_ENV = if [ -f "$(RUN_ENV)" ]; then set -a && . "$(abspath $(RUN_ENV))" && set +a; fi;

.PHONY: run serve cli psql test soak bench bench-scale mutate install clean-data screenshots

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" -e ./clients/python
	touch $(STAMP)

install: $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $(BENCH_STAMP)

$(MUTATE_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,mutate]"
	touch $(MUTATE_STAMP)

## Serve on http://127.0.0.1:$${PORT:-8080} with a worker and the scheduler (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set).
run: $(STAMP)
	$(PY) -m app.dev.server

## The production web server alone (granian, WEB_WORKERS x WEB_THREADS on WEB_HOST:PORT), as compose runs it;
## needs DATABASE_URL and REDIS_URL, and the migrations applied (`make cli ARGS="db upgrade"`).
serve: $(STAMP)
	exec $(PY) -m app.serving

## Run a CLI command beside `make run` (on its servers) or on DATABASE_URL/REDIS_URL, e.g.
## ARGS="calculate-metrics", ARGS="apply-retention --dry-run", ARGS="hash-password"; ARGS="--help" lists them.
cli: $(STAMP)
	@$(FROM_RUN_ENV) exec $(PY) -m flask --app wsgi $(ARGS)

## psql on `make run`'s database (or on DATABASE_URL): the psql on PATH, else embedded PostgreSQL's.
## ARGS="-c 'select count(*) from events'" runs one statement.
psql: $(STAMP)
	@$(FROM_RUN_ENV) exec $(PY) -c 'import sys; from app.dev.embedded import exec_psql; exec_psql(sys.argv[1:])' $(ARGS)

## Run the whole test suite against real PostgreSQL and Redis.
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## Screenshots of /events and /metrics at 1280 and 375 px wide, into screenshots/ (needs Chromium).
screenshots: $(STAMP)
	$(PY) -m pytest -q -rs tests/test_browser.py -k screenshots $(PYTEST_ARGS)

## A minute of mixed traffic against the web server and a worker: no 5xx, flat memory, bounded connections.
soak: $(STAMP)
	$(PY) -m soak $(SOAK_ARGS)

## Benchmark the service beside its references on real PostgreSQL and Redis (about 12 minutes):
## prints the table and writes bench/RESULTS.md. Installs wrk when it can (else an asyncio client).
bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null 2>&1 \
		|| echo "bench: could not install wrk; the asyncio load generator will be used"
	$(PY) -m bench $(BENCH_ARGS)

## The service at 20 million events over 64 day partitions beside the same run's small table (under 20 minutes):
## writes bench/RESULTS-scale.md. Needs about 8 GB free on the PostgreSQL server's disk while it runs.
bench-scale: $(BENCH_STAMP)
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null 2>&1 \
		|| echo "bench-scale: could not install wrk; the asyncio load generator will be used"
	$(PY) -m bench.scale $(BENCH_SCALE_ARGS)

## Mutation testing of app/core, app/services, app/runtime and the HTTP security checks with mutmut (about an hour):
## writes tests/MUTATION.md (score, surviving mutants by file). Not part of `make test`.
mutate: $(MUTATE_STAMP)
	$(PY) -m mutation $(MUTATE_ARGS)

## Forget the embedded servers' data (events, metrics) kept by `make run`.
clean-data:
	rm -rf .data
