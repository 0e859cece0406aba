# Liên Thông: two commands matter. `make run` (everything up until Ctrl-C) and `make test` (all tests).
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PYTEST_ARGS ?=

.PHONY: run test soak unit integration setup infra-up infra-down infra-status schemas asyncapi docs bench clean

## Install uv (if missing) and the locked workspace.
setup:
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --all-packages --compile-bytecode

## Infrastructure (local Kafka + FerretDB) and the four services, until Ctrl-C.
run: setup
	@$(UV) run --frozen lienthong run

## Every test: unit, contract and integration against real servers; then the example agency adapter's own tests,
## which use nothing but lienthong-testkit (as an agency's repository would).
test: setup
	@$(UV) run --frozen pytest $(PYTEST_ARGS)
	@cd examples/agency-adapter && $(UV) run --frozen pytest -n 2 $(PYTEST_ARGS)

## The fault tests at a larger volume (part of `make test` at a small one): three Kafka nodes and two instances of
## each service under SIGKILL with 1,000 dossiers; stats killed 24 times over its own history.
soak: setup
	@LIENTHONG_SCALE_DOSSIERS=$${LIENTHONG_SCALE_DOSSIERS:-1000} $(UV) run --frozen pytest -s \
		tests/integration/test_scale_out.py tests/integration/test_stats_faults.py tests/integration/test_routing_store.py $(PYTEST_ARGS)

unit: setup
	@$(UV) run --frozen pytest tests/unit $(PYTEST_ARGS)

integration: setup
	@$(UV) run --frozen pytest tests/integration $(PYTEST_ARGS)

infra-up: setup
	@$(UV) run --frozen lienthong infra up
infra-down: setup
	@$(UV) run --frozen lienthong infra down
infra-status: setup
	@$(UV) run --frozen lienthong infra status

## Regenerate the checked-in JSON Schemas and AsyncAPI documents from the code.
docs: schemas asyncapi
schemas: setup
	@$(UV) run --frozen python -m lienthong.contracts.export docs/schemas
asyncapi: setup
	@# What FastStream makes of each service's `bootstrap().asyncapi()` (lienthong.asyncapi: batches shown per record), keys
	@# sorted: FastStream's channel order follows string hashing, which changes from one process to the next.
	@$(UV) run --frozen python -c "import importlib, pathlib; from lienthong import asyncapi; [pathlib.Path(f'docs/asyncapi/{s}.yaml').write_text(asyncapi.to_yaml(asyncapi.document(importlib.import_module(f'{s}.main').bootstrap().asyncapi())), encoding='utf-8') for s in ('intake', 'routing', 'notify', 'stats')]"
	@echo "docs/asyncapi/*.yaml regenerated"

bench: setup
	@for b in benchmarks/bench_*.py; do $(UV) run --frozen python $$b || exit 1; done

clean: infra-down
	rm -rf .lienthong
