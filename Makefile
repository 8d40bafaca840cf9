# tickmesh: the two commands a newcomer needs are `make run` and `make test`.
# Every target installs what it needs first (a virtual env in .venv, npm tools).

PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)
PY_SOURCES := src services tests bench conftest.py

.PHONY: run demo test lint proto bench chaos fuzz setup clean frontend frontend-test bytecode

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set, nothing caches it, and
# every service process (the tests start hundreds) compiled its imports again, ~3 s each.
$(VENV)/.synced: $(UV) pyproject.toml uv.lock services/*/pyproject.toml
	$(UV) sync --frozen --compile-bytecode
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(VENV)/.synced node_modules/.installed

# Our own modules' bytecode, brought up to date (the dependencies' is compiled at sync).
bytecode: $(VENV)/.synced
	$(BIN)/python -m compileall -q src services

# The dashboard: rebuilt when its sources change, served by the gateway at /.
FRONTEND_SOURCES := $(shell find frontend/src -type f 2>/dev/null) frontend/index.html \
	frontend/vite.config.ts frontend/package.json
frontend/node_modules/.package-lock.json: frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error

frontend/dist/index.html: frontend/node_modules/.package-lock.json $(FRONTEND_SOURCES)
	cd frontend && npm run build

frontend: frontend/dist/index.html

## frontend-test: type checks and unit tests of the dashboard (vitest)
frontend-test: frontend/node_modules/.package-lock.json
	cd frontend && npm run lint && npm test

## run: the whole mesh on this machine (embedded PostgreSQL and Redis unless URLs are given)
run: setup frontend bytecode
	$(BIN)/tickmesh run

## demo: the mesh against the local exchange simulator, no internet needed
demo: setup frontend bytecode
	$(BIN)/tickmesh demo

## test: lint, type checks, contract checks and every test
test: setup lint frontend-test bytecode
	$(BIN)/pytest

## lint: ruff (lint + format check) and mypy strict on our code
lint: setup
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy $(PY_SOURCES)

## proto: regenerate the Python contracts in src/tickmesh/v2 from proto/
proto: setup
	$(BIN)/python -m tickmesh.mesh.protogen

## bench: every benchmark in bench/, one table of figures
bench: setup
	$(BIN)/python -m bench

## chaos: replay a capture through the whole mesh while killing the collector, bars, analytics
## and gateway 10 times each and stopping PostgreSQL for 30 s; compare with an uninterrupted
## run ("0 lost, 0 doubled" or exit 1)
chaos: setup
	$(BIN)/python -m bench.chaos

## fuzz: stateful Schemathesis over the gateway's whole OpenAPI (register -> login -> alerts ...)
## against a real mesh, 1,000 calls or more; fails on any 5xx or answer the schema does not allow
FUZZ_CASES ?= 1000
fuzz: setup
	TICKMESH_FUZZ_CASES=$(FUZZ_CASES) $(BIN)/pytest tests/security/test_openapi_fuzz.py -q -s

clean:
	rm -rf $(VENV) .tools node_modules
