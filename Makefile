# Tillit: `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tillit

OPA_VERSION := 1.22.2
OPA := $(CACHE)/opa-v$(OPA_VERSION)/opa
BUF_VERSION := 1.75.0
BUF := $(CACHE)/buf-v$(BUF_VERSION)/buf
REGAL_MODULE := github.com/open-policy-agent/regal
REGAL_VERSION := 0.39.0
REGAL := $(CACHE)/regal-v$(REGAL_VERSION)/regal

export TILLIT_OPA := $(OPA)
PROTOS := $(shell find protos -name '*.proto')
DEMO_DIR := .data/demo

.PHONY: help venv gen tools test test-python test-policy lint fmt demo bench clean

help:
	@echo "make demo   - set up everything and play the once-only scenario on loopback"
	@echo "make test   - unit, policy and end-to-end tests (real OPA, real mTLS)"
	@echo "make lint   - ruff, mypy --strict, buf lint, opa fmt/check, regal"
	@echo "make bench  - exchanges per second through the whole path, vs a bare gRPC echo"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

broker/_gen/.stamp: $(VENV)/.installed $(PROTOS) protos/generate.py
	$(BIN)/python protos/generate.py
	touch $@

gen: broker/_gen/.stamp

# OPA at the pinned version: reuse one on PATH, else build it once per user.
$(OPA):
	@mkdir -p $(dir $@)
	@if command -v opa >/dev/null && opa version | grep -qx "Version: $(OPA_VERSION)"; then \
	  ln -sf "$$(command -v opa)" $@; \
	else \
	  echo "building OPA v$(OPA_VERSION) with go install (once; cached in $(CACHE))"; \
	  GOBIN=$(dir $@) CGO_ENABLED=0 GOFLAGS=-mod=mod go install github.com/open-policy-agent/opa@v$(OPA_VERSION); \
	fi

$(BUF):
	@mkdir -p $(dir $@)
	@if command -v buf >/dev/null && [ "$$(buf --version)" = "$(BUF_VERSION)" ]; then \
	  ln -sf "$$(command -v buf)" $@; \
	else \
	  echo "building buf v$(BUF_VERSION) with go install (once; cached in $(CACHE))"; \
	  GOBIN=$(dir $@) CGO_ENABLED=0 go install github.com/bufbuild/buf/cmd/buf@v$(BUF_VERSION); \
	fi

# `go install regal@v...` asks the proxy for regal's version list (a deprecation
# check) and the proxy refuses it; downloading the pinned module and building it works.
$(REGAL):
	@mkdir -p $(dir $@)
	@echo "building regal v$(REGAL_VERSION) from the Go module proxy (once; cached in $(CACHE))"
	go mod download $(REGAL_MODULE)@v$(REGAL_VERSION)
	cd "$$(go env GOMODCACHE)/$(REGAL_MODULE)@v$(REGAL_VERSION)" && \
	  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o $@ .

tools: $(OPA)

test: gen tools test-policy test-python

test-policy: $(OPA) $(REGAL)
	$(OPA) fmt --list --fail policies
	$(OPA) check --strict policies
	$(REGAL) lint policies
	$(OPA) test policies --coverage --format json > .policy-coverage.json || { $(OPA) test policies -v; exit 1; }
	$(OPA) test policies
	@$(BIN)/python -c "import json;c=json.load(open('.policy-coverage.json'))['coverage'];print(f'policy coverage: {c:.1f}%');exit(0 if c>=95 else 1)"

test-python: gen tools
	$(BIN)/pytest -q

lint: gen $(BUF) $(OPA) $(REGAL)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy broker consent tests protos/generate.py
	cd protos && $(BUF) lint
	$(OPA) fmt --list --fail policies
	$(REGAL) lint policies

fmt: gen
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(OPA) fmt -w policies

demo: gen tools
	rm -rf $(DEMO_DIR)
	$(BIN)/tillit --data-dir $(DEMO_DIR) demo $(DEMO_ARGS)

bench: gen tools
	$(BIN)/python -m tests.bench.exchange_bench

clean:
	rm -rf $(VENV) broker/_gen .data .pytest_cache .mypy_cache .ruff_cache .policy-coverage.json

# Debian's Chromium for the portal's browser tests, installed only when missing.
.PHONY: browser
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y chromium; \
	fi
test-python: browser

# Audit log at scale: appends/s at size 0 and 1,000,000, and `tillit audit verify` over 1M.
.PHONY: bench-audit
bench-audit: gen
	$(BIN)/python -m tests.bench.audit_bench
