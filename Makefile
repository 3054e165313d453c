# Consent Ledger — one-command set-up, test and run.
#   make run    set everything up and start chain + API + portal (consent-ledger up)
#   make test   set everything up and run the whole suite (lint, forge, pytest)
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
FORGE  := $(CURDIR)/node_modules/.bin/forge
# forge uses the solc that the Python build uses: native solc 0.8.30 if on PATH, else the solc-js wrapper.
SOLC    = $(shell $(PY) -c 'from ledger_service.chain.build import find_solc; print(find_solc())')
# `slow` tests (a 30 MB FHIR body, a DB locked past its busy timeout, a reorg race) run with PYTEST_ARGS=.
PYTEST_ARGS ?= -m "not slow"

.PHONY: help setup build browser-deps lint forge-test forge-snapshot slither pytest test run clean

help:
	@echo "make run     set up and start the ledger (chain, API, portal) on 127.0.0.1"
	@echo "make test    set up and run the whole suite (lint, forge ci profile, pytest)"
	@echo "make build   compile the contracts into Python artifacts"
	@echo "make soak    bounded load/soak against a real server (scripts/soak.py)"
	@echo "make bench   the benchmark suite (BENCHMARKS.md, benchmarks/results/)"
	@echo "make clean   remove the venv, node_modules and build outputs"

setup: $(VENV)/.stamp node_modules/.stamp consent_api/static/vendor/VERSIONS.json

$(VENV)/.stamp: pyproject.toml requirements.lock Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev,postgres]'
	touch $@

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The portal's and /docs' browser code (ethers, swagger-ui, shamir-secret-sharing, @hpke/core) is copied from node_modules: no CDN, works offline.
consent_api/static/vendor/VERSIONS.json: node_modules/.stamp scripts/vendor_portal.sh
	bash scripts/vendor_portal.sh

# Browser tests drive Debian's chromium (Playwright cannot download a browser here).
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "browser tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; \
	  fi; \
	fi

build: setup
	$(PY) -m ledger_service.chain.build

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ledger_service consent_api
	$(BIN)/lint-imports --no-cache
	cd contracts && $(FORGE) fmt --check

forge-test: build
	cd contracts && FOUNDRY_SOLC=$(SOLC) FOUNDRY_PROFILE=ci $(FORGE) test
	cd contracts && FOUNDRY_SOLC=$(SOLC) $(FORGE) snapshot --check

# slither pins web3 7, so it lives in its own venv (requirements-slither.lock).
SLITHER_VENV := .venv-slither
$(SLITHER_VENV)/.stamp: requirements-slither.lock
	$(PYTHON) -m venv $(SLITHER_VENV)
	$(SLITHER_VENV)/bin/pip install --quiet --upgrade pip
	$(SLITHER_VENV)/bin/pip install --quiet -r requirements-slither.lock
	touch $@

# Zero high or medium findings; accepted lower ones are triaged in the source (slither-disable-next-line + why).
slither: $(SLITHER_VENV)/.stamp build
	cd contracts && PATH=$(CURDIR)/node_modules/.bin:$$PATH FOUNDRY_SOLC=$(SOLC) \
	  $(CURDIR)/$(SLITHER_VENV)/bin/slither . --filter-paths "node_modules|test" --fail-medium \
	  --exclude-informational --exclude-optimization

forge-snapshot: build
	cd contracts && FOUNDRY_SOLC=$(SOLC) $(FORGE) snapshot

# The DB-backed tests run twice: on SQLite with everything, then on a throwaway PostgreSQL 15.
PG_TESTS := tests/integration/test_database.py tests/e2e tests/api tests/integration/test_batched_mode.py

pytest: build browser-deps
	$(BIN)/pytest $(PYTEST_ARGS)
	CONSENT_LEDGER_TEST_POSTGRES_URL="$$(bash scripts/test-postgres.sh)" $(BIN)/pytest $(PG_TESTS) $(PYTEST_ARGS)

test: lint forge-test slither pytest

run: build
	$(BIN)/consent-ledger up

clean:
	rm -rf $(VENV) $(SLITHER_VENV) node_modules contracts/out contracts/cache ledger_service/chain/artifacts

include tests/reliability.mk
include benchmarks/bench.mk
