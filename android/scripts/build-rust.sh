#!/usr/bin/env bash
# Cross-compiles vitalcore-ffi for the four Android ABIs into JNILIBS/<abi>/ and generates
# the Kotlin bindings into KOTLIN_OUT. Called by the Gradle task :vitalcore:buildRust.
# Needs ANDROID_NDK_HOME, `cargo install cargo-ndk`, and
# `rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android i686-linux-android`.
# Usage: [VITALCORE_WITH_TRACT=1] android/scripts/build-rust.sh JNILIBS KOTLIN_OUT   (from the repository root)
set -euo pipefail
jnilibs=${1:?JNILIBS dir}
kotlin_out=${2:?KOTLIN_OUT dir}
profile=release-ffi
# The mobile build leaves tract (the general ONNX evaluator) out: tree-ensemble classifiers (the
# bundled default model and what the trainer publishes) run on the native evaluator, and any
# other model is refused at load (`ModelRejected`, the old model keeps serving).
# VITALCORE_WITH_TRACT=1 builds with tract (x86_64 stripped: 5.6 MB without, 20.9 MB with).
features=(--no-default-features)
if [ "${VITALCORE_WITH_TRACT:-0}" = 1 ]; then features=(); fi
# Expanded as ${features[@]+...}: macOS's bash 3.2 calls an empty array unbound under `set -u`.

# 21 is the lowest API level the NDK still targets; the AAR's minSdk (24) is above it.
cargo ndk --platform 21 -t arm64-v8a -t armeabi-v7a -t x86_64 -t x86 -o "$jnilibs" \
  build -p vitalcore-ffi --locked --profile "$profile" ${features[@]+"${features[@]}"}

# Bindings come from a host build of the same sources and features: uniffi's metadata does not
# depend on the target. The test-only exports (feature `testing`) are never in the AAR.
cargo build -p vitalcore-ffi --locked --profile "$profile" ${features[@]+"${features[@]}"}
cargo build -p vitalcore-ffi --locked --features cli --bin uniffi-bindgen
rm -rf "$kotlin_out"
target/debug/uniffi-bindgen generate --no-format --library "target/$profile/libvitalcore_ffi.so" \
  --language kotlin --out-dir "$kotlin_out"

# Gradle's packaging strips debug info; the release-ffi profile keeps symbols for bindgen.
ls -l "$jnilibs"/*/libvitalcore_ffi.so
