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

.PHONY: test-models test-no-tract test-kernels test-arm64
.PHONY: ffi-lib server-bin py-wheel bindings-gen test-bindings test-bindings-python test-kotlin test-swift-gen bench-bindings
.PHONY: help demo test-demo test test-rust test-python lint fmt venv data bench clean services test-deploy

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

# Quality references (NeuroKit2's verdicts per window), noisy copies of the real recordings
# and rhythms built from their beats, for the quality gate's tests.
$(CACHE)/quality/.stamp: $(CACHE)/.stamp scripts/quality_data.py
	$(PY) scripts/quality_data.py --cache $(CACHE)
	touch $@

data: $(CACHE)/quality/.stamp

# Backend test services: PostgreSQL 15 (pg_ctlcluster), the s3s-fs S3 server binary and
# HAProxy (Debian's package; the scale-out test's load balancer).
export VITALCORE_TEST_PG_URL ?= postgres://vitalcore_test:vitalcore_test@127.0.0.1:5432/vitalcore_test
export VITALCORE_S3_SERVER_BIN ?= $(CURDIR)/.services/bin/s3s-fs
export VITALCORE_HAPROXY_BIN ?= /usr/sbin/haproxy

services:
	bash scripts/services.sh start

# The serverless template is linted like code.
test-deploy: $(VENV)/.stamp
	$(VENV)/bin/cfn-lint backend/deploy/template.yaml

# ONNX test models for the inference tests and benchmarks (pinned scikit-learn + skl2onnx), and
# the ONNX Runtime library from the pinned onnxruntime wheel that parity tests compare with.
$(CACHE)/models/.stamp: $(VENV)/.stamp models/scripts/make_test_models.py
	$(PY) models/scripts/make_test_models.py --out $(CACHE)/models
	touch $@

data: $(CACHE)/models/.stamp

# A seeded zoo of models of the kinds users export (random CNNs, MLPs, tree ensembles, linear
# pipelines): the native evaluators' coverage test and the inference benchmark's per-model run.
$(CACHE)/zoo/.stamp: $(VENV)/.stamp models/scripts/make_zoo.py
	$(PY) models/scripts/make_zoo.py --out $(CACHE)/zoo
	touch $@

data: $(CACHE)/zoo/.stamp

# tract builds an error value per tree-ensemble leaf it visits: with RUST_BACKTRACE=1 each
# would capture a backtrace, making tree-model tests ~100x slower. Panics keep theirs.
export RUST_LIB_BACKTRACE ?= 0

export ORT_DYLIB_PATH ?= $(CURDIR)/$(VENV)/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

test-rust: data services
	$(CARGO) test --workspace --all-features --locked

test-python: data
	$(PY) -m pytest -q scripts/tests

test: lint test-rust test-python test-deploy test-bindings test-models test-demo test-no-tract test-kernels test-arm64
	@echo "make test: all suites passed"

# DEMO_ARGS: for example --devices 100, or --postgres URL.
# The trainer's parity check runs the SDK's inference through the Python bindings (py-wheel).
demo: data py-wheel
	PYTHONPATH=$(CURDIR)/$(PY_BINDINGS) bash scripts/demo.sh $(DEMO_ARGS)

# The closed loop on a small fleet (SQLite and PostgreSQL), debug build shared with test-rust.
# Headless Chromium (Debian package, installed if missing) renders the HTML report.
test-demo: data services py-wheel
	$(CARGO) build --workspace --all-features --locked --bin vitalcore-demo
	PYTHONPATH=$(CURDIR)/$(PY_BINDINGS) VITALCORE_CHROMIUM=$$(bash scripts/demo/chromium.sh) \
	VITALCORE_DEMO_BIN=$${CARGO_TARGET_DIR:-$(CURDIR)/target}/debug/vitalcore-demo \
	$(PY) -m pytest -q scripts/demo/test_demo.py

bench: data services
	bash scripts/bench.sh

clean:
	$(CARGO) clean
	rm -rf $(CACHE)

# --- Bindings (bindings/, android/, ios/) ------------------------------------------------
# The debug cdylib with the test-only exports, and the crate's own uniffi-bindgen; the same
# feature set as `cargo test --all-features`, so test-rust's build is reused.
FFI_FEATURES := cli,testing
FFI_LIB      := target/debug/libvitalcore_ffi.so
BINDGEN      := target/debug/uniffi-bindgen
GEN          := target/bindings
# Maven: a repository inside the git-ignored cache; online (Maven Central) only until the
# first successful run has filled it, offline after that.
M2           := $(CACHE)/m2
MVN          = mvn -B -ntp -Dmaven.repo.local=$(CURDIR)/$(M2) $(if $(wildcard $(M2)/.complete),-o,) \
               -f android/jvm-tests/pom.xml -Dvitalcore.generated.dir=$(CURDIR)/$(GEN)/kotlin \
               -Dvitalcore.lib.dir=$(CURDIR)/target/debug -Dvitalcore.recordings.dir=$(CURDIR)/$(CACHE)/recordings \
               -Dvitalcore.server.bin=$(CURDIR)/$(SERVER_BIN)

ffi-lib:
	$(CARGO) build -p vitalcore-ffi --features $(FFI_FEATURES) --locked

# The real backend binary the Kotlin tests sync against. Built with the workspace's feature
# set (not `-p`), so the artifacts of test-rust's `cargo test --workspace --all-features` are
# reused instead of rebuilding the server's dependency tree with other features.
SERVER_BIN := target/debug/vitalcore-server
server-bin:
	$(CARGO) build --workspace --all-features --locked --bin vitalcore-server

bindings-gen: ffi-lib
	rm -rf $(GEN)
	for lang in kotlin swift python; do \
	  $(BINDGEN) generate --no-format --library $(FFI_LIB) --language $$lang --out-dir $(GEN)/$$lang; \
	done

# The Python wheel exactly as `pip install ./bindings` builds it (maturin, uniffi), plus the
# test-only exports; installed into a private directory, not into the project venv. Phony, so
# one `make test` builds it once for both the bindings' and the trainer's tests.
PY_BINDINGS := target/py-test
py-wheel: venv
	rm -rf target/wheels-test $(PY_BINDINGS)
	$(VENV)/bin/maturin build --quiet -m bindings/Cargo.toml --features testing --profile dev -o target/wheels-test
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --target $(PY_BINDINGS) target/wheels-test/*.whl

test-bindings-python: py-wheel data server-bin
	cd bindings/python/tests && PYTHONPATH=$(CURDIR)/target/py-test VITALCORE_SERVER_BIN=$(CURDIR)/$(SERVER_BIN) \
	  $(CURDIR)/$(PY) -m pytest -q -p no:cacheprovider .

test-kotlin: bindings-gen server-bin data
	$(MVN) test
	mkdir -p $(M2) && touch $(M2)/.complete

test-swift-gen: bindings-gen data
	$(PY) ios/scripts/check_generated.py --generated $(GEN)/swift --facade ios/Sources/Vitalcore
	VITALCORE_SWIFT_GEN=$(CURDIR)/$(GEN)/swift $(PY) -m pytest -q -p no:cacheprovider ios/scripts

test-bindings: test-bindings-python test-kotlin test-swift-gen

bench-bindings: data
	bash bindings/bench.sh

# The mobile configuration (no tract; what android/ and ios/ build): tree models run natively,
# any other model is refused at load by name, an update that needs tract leaves the old model
# serving. Other features than test-rust, so vitalcore compiles once more, for one test binary.
test-no-tract: data
	$(CARGO) clippy -p vitalcore --no-default-features --locked --lib --test inference_native -- -D warnings
	$(CARGO) clippy -p vitalcore-ffi --no-default-features --locked --lib -- -D warnings
	$(CARGO) test -p vitalcore --no-default-features --locked --test inference_native

# The inference suites once per instruction set this CPU has, our graph kernels and tract's
# forced to it (a summation order another CPU would use shows here first): our copy with
# VITALCORE_KERNELS (portable|avx2|auto, core/sdk/src/inference/graph.rs), tract's with
# tract-linalg's TRACT_CPU_ISA knob, which removes features from what its kernels dispatch on.
# Same build as test-rust (runtime switches only): about 20 s of tests for the three runs here.
# aarch64: one run, NEON is tract's baseline.
INFERENCE_SUITES := --test inference_graph --test inference_native --test inference_parity \
                    --test inference_model --test inference_trees
TRACT_NO_AVX512  := -avx512f,-avx512vnni,-avx512fp16,-amx-int8,-amx-bf16
TRACT_GENERIC    := -avx,-avx2,-fma,-f16c,-avxvnni,$(TRACT_NO_AVX512)
test-kernels: data
	$(CARGO) test -p vitalcore --all-features --locked $(INFERENCE_SUITES) --no-run
	@flags=$$(grep -m1 '^flags' /proc/cpuinfo || true); has() { [[ " $$flags " == *" $$1 "* ]]; }; \
	runs=("portable $(TRACT_GENERIC)"); \
	if has avx2 && has fma; then runs+=("avx2 $(TRACT_NO_AVX512)"); fi; \
	if has avx512f; then runs+=("auto -"); fi; \
	if [[ $$(uname -m) != x86_64 ]]; then runs=("auto -"); fi; \
	for run in "$${runs[@]}"; do \
	  read -r ours tract <<<"$$run"; [[ $$tract == - ]] && tract=""; \
	  echo "== test-kernels: VITALCORE_KERNELS=$$ours TRACT_CPU_ISA=$$tract"; \
	  VITALCORE_KERNELS=$$ours TRACT_CPU_ISA=$$tract \
	    $(CARGO) test -p vitalcore --all-features --locked $(INFERENCE_SUITES) -q; \
	done

# ARM64, what phones run: the signal, store and inference suites cross-built for
# aarch64-unknown-linux-gnu and run under qemu-user, ONNX Runtime's aarch64 library as the
# parity reference (scripts/arm64/run.sh installs the rustup target, Debian's cross gcc and
# qemu-user if missing, and fetches that library from the pinned wheel on PyPI).
test-arm64: data
	bash scripts/arm64/run.sh

# --- Training pipeline (models/) ---------------------------------------------------------
# The trainer against real vitalcore-server processes. The server is built with the same
# package selection and features as test-rust, so after it this is a link step, not a rebuild.
# The parity check's default runner is the SDK through the Python bindings: the same wheel.
test-models: venv py-wheel
	$(CARGO) build --workspace --all-features --locked --bin vitalcore-server
	VITALCORE_SERVER_BIN=$(CURDIR)/target/debug/vitalcore-server PYTHONPATH=$(CURDIR)/models \
	  VITALCORE_BINDINGS_PYTHONPATH=$(CURDIR)/$(PY_BINDINGS) \
	  $(PY) -m pytest -q -p no:cacheprovider models/tests
