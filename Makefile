# Sequential Messaging Engine — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install browser run demo stop kafka-start kafka-status engine gateway test test-unit test-integration test-e2e lint schemas bench clean faults soak fuzz

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.installed-*
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	@touch $@

WEB := services/sme/gateway/web
CHART := services/sme/gateway/static/vendor/chart.umd.min.js

$(CHART): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	@mkdir -p $(@D)
	cp $(WEB)/node_modules/chart.js/dist/chart.umd.min.js $@
	cp $(WEB)/node_modules/chart.js/LICENSE.md $(@D)/chart.js.LICENSE.md

ASYNCAPI := tests/asyncapi
ASYNCAPI_PARSER := $(ASYNCAPI)/node_modules/.package-lock.json

$(ASYNCAPI_PARSER): $(ASYNCAPI)/package.json $(ASYNCAPI)/package-lock.json
	cd $(ASYNCAPI) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(STAMP) $(CHART) $(ASYNCAPI_PARSER) ## virtualenv, Python deps, dashboard assets and the AsyncAPI parser from npm (re-run on change)

browser: ## Debian's chromium for the dashboard test (installed once)
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q chromium >/dev/null || \
	  { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium >/dev/null; }; }
	@chromium --version

kafka-start: ## start the local Kafka broker (idempotent)
	deploy/local/kafka.sh start

kafka-status:
	deploy/local/kafka.sh status

stop: ## stop the local Kafka broker
	deploy/local/kafka.sh stop

run: install kafka-start ## broker + engine + gateway; Ctrl-C stops the services
	deploy/local/run.sh

demo: ## with `make run` going: a sample sequence, a simulated population and sender (DEMO_ARGS="--seconds 60")
	$(BIN)/sme demo $(DEMO_ARGS)

engine: install kafka-start
	$(BIN)/sme engine

gateway: install kafka-start
	$(BIN)/sme gateway

lint: install ## ruff (incl. bugbear, bandit, datetime rules), mypy --strict, the dashboard's and the AsyncAPI check's script syntax
	$(BIN)/ruff check services tests bench
	$(BIN)/mypy
	node --check services/sme/gateway/static/dashboard.js
	node --check services/sme/gateway/static/editor.js
	node --check services/sme/gateway/static/common.js
	node --check tests/asyncapi/validate.mjs

test: install browser lint kafka-start ## the whole suite: unit, integration (real broker + ClickHouse engine), e2e
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: install browser kafka-start
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-e2e: install kafka-start
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

BENCH_USERS ?= 200000
bench: install kafka-start ## benchmarks: writes bench/results/latest.json (see BENCHMARKS.md); BENCH_USERS=… for the e2e size
	@echo "bench started $$(date -u +%FT%TZ)"
	$(BIN)/python bench/core_bench.py --users 20000
	$(BIN)/python bench/engine_bench.py --users 3000 --wait 20
	$(BIN)/python bench/sink_bench.py --records 500000 --per-record 4
	$(BIN)/python bench/e2e_bench.py --users $(BENCH_USERS)
	$(BIN)/python bench/timer_bench.py --users 100000 --wait 120 --background 100
	$(BIN)/python bench/dashboard_bench.py --rows 10000000 --repeats 20
	$(BIN)/python bench/lift_bench.py --days 14 --users 20000 --seeds 10 --extra-seeds 5
	@echo "bench finished $$(date -u +%FT%TZ)"

faults: install ## fault suite (issue 9) on its own broker: kill -9, failover, broker restart, first starts; .data/faults/latest.json
	$(BIN)/python -m tests.faults run $(FAULTS_ARGS)

soak: install ## soak, not in CI: 30 min by default (make soak SOAK_ARGS="--minutes 5"); RSS, lag, timer lateness every 30 s
	$(BIN)/python -m tests.faults soak $(SOAK_ARGS)

fuzz: install kafka-start ## schemathesis, every check, against the real gateway (auth off, admin and workspace keys); FUZZ_EXAMPLES per operation
	SME_FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-200} $(BIN)/pytest tests/integration/test_api_fuzz.py -s --timeout 3600 $(PYTEST_ARGS)

schemas: install ## regenerate schemas/*.schema.json, openapi.json and asyncapi.yaml from the contracts
	$(BIN)/sme schemas

clean: stop
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
