# vitalcore — the two commands that matter are `make demo` and `make test`.
# Every target installs or starts what it needs and is safe to run again.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
CACHE     := .cache
CARGO     ?= cargo
export VITALCORE_CACHE := $(CURDIR)/$(CACHE)
export VITALCORE_PYTHON := $(CURDIR)/$(PY)

.PHONY: help demo test test-rust test-python lint fmt venv data bench clean services test-deploy

help:
	@echo "make demo   - run the main job end to end on embedded defaults"
	@echo "make test   - every test: lints, Rust, Python, end to end (what CI runs)"
	@echo "make bench  - benchmarks against the reference tools (figures for BENCHMARKS.md)"
	@echo "make data   - fetch real recordings and reference outputs into $(CACHE)/"

# Python venv with pinned versions; rebuilt only when requirements.txt changes.
$(VENV)/.stamp: requirements.txt scripts/venv.sh
	bash scripts/venv.sh $(VENV) requirements.txt
	touch $@

venv: $(VENV)/.stamp

# Real recordings (from the heartpy wheel) and reference outputs (NeuroKit2, HeartPy),
# computed once into the git-ignored cache.
$(CACHE)/.stamp: $(VENV)/.stamp scripts/fetch_data.py
	$(PY) scripts/fetch_data.py --cache $(CACHE)
	touch $@

data: $(CACHE)/.stamp

# Backend test services: PostgreSQL 15 (pg_ctlcluster) and the s3s-fs S3 server binary.
export VITALCORE_TEST_PG_URL ?= postgres://vitalcore_test:vitalcore_test@127.0.0.1:5432/vitalcore_test
export VITALCORE_S3_SERVER_BIN ?= $(CURDIR)/.services/bin/s3s-fs

services:
	bash scripts/services.sh start

# The serverless template is linted like code.
test-deploy: $(VENV)/.stamp
	$(VENV)/bin/cfn-lint backend/deploy/template.yaml

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

test-rust: data services
	$(CARGO) test --workspace --all-features --locked

test-python: data
	$(PY) -m pytest -q scripts/tests

test: lint test-rust test-python test-deploy
	@echo "make test: all suites passed"

demo: data
	bash scripts/demo.sh

bench: data services
	bash scripts/bench.sh

clean:
	$(CARGO) clean
	rm -rf $(CACHE)
