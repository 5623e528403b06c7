# trio-bus — the two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit lint typecheck bench bench-bridges clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/bus demo

# Brokers come up before pytest and go down after it, also when tests fail.
test: install
	@rc=0; \
	$(MAKE) --no-print-directory brokers-up || rc=$$?; \
	if [ $$rc -eq 0 ]; then \
	  eval "$$($(MAKE) --no-print-directory -s brokers-env)"; \
	  $(MAKE) --no-print-directory lint typecheck || rc=$$?; \
	  $(BIN)/pytest -q -p no:cacheprovider || rc=$$?; \
	fi; \
	$(MAKE) --no-print-directory brokers-down || true; \
	exit $$rc

test-unit: install
	$(BIN)/pytest -q -m "not brokers"

lint: install
	$(BIN)/ruff check bus bridges tests benchmarks

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/bus bench local --json benchmarks/results/local.json

# The bridges against the raw clients and FastStream; needs `make brokers-up` first.
bench-bridges: install
	eval "$$($(MAKE) --no-print-directory -s brokers-env)"; \
	$(BIN)/bus bench bridges --json benchmarks/results/bridges.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

include tests/brokers/brokers.mk
