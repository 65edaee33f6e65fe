#!/usr/bin/env bash
# Builds VitalcoreFFI.xcframework (device + simulator static libraries, header, module map)
# and the generated Swift bindings, for ios/Package.swift. Needs macOS with Xcode and
# `rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios`.
# Usage: [VITALCORE_WITH_TRACT=1] ios/build-xcframework.sh   (from anywhere)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
profile=release-ffi
lib=libvitalcore_ffi.a
out="$here/build"
# The mobile build leaves tract (the general ONNX evaluator) out: tree-ensemble classifiers (the
# bundled default model and what the trainer publishes) run on the native evaluator, and any
# other model is refused at load (`ModelRejected`, the old model keeps serving).
# VITALCORE_WITH_TRACT=1 builds with tract (x86_64 stripped: 5.6 MB without, 20.9 MB with).
features=(--no-default-features)
if [ "${VITALCORE_WITH_TRACT:-0}" = 1 ]; then features=(); fi
# Expanded as ${features[@]+...}: macOS's bash 3.2 calls an empty array unbound under `set -u`.
cd "$root"

for t in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios; do
  cargo build -p vitalcore-ffi --locked --profile "$profile" --target "$t" ${features[@]+"${features[@]}"}
done

# Generate from a host build of the same crate and features (the metadata is per crate, not
# per target); the shipped library never has the test-only exports.
cargo build -p vitalcore-ffi --locked --features cli --bin uniffi-bindgen
cargo build -p vitalcore-ffi --locked --profile "$profile" ${features[@]+"${features[@]}"}
host_lib="target/$profile/libvitalcore_ffi.dylib"
rm -rf "$out" && mkdir -p "$out/headers" "$here/Sources/VitalcoreFFI"
target/debug/uniffi-bindgen generate --library "$host_lib" --language swift --out-dir "$out/gen"
cp "$out/gen/VitalcoreFFI.swift" "$here/Sources/VitalcoreFFI/"
cp "$out/gen/vitalcore_ffiFFI.h" "$out/headers/"
# SwiftPM/Xcode look for `module.modulemap` inside an xcframework's Headers.
cp "$out/gen/vitalcore_ffiFFI.modulemap" "$out/headers/module.modulemap"

# One simulator slice for both simulator architectures.
mkdir -p "$out/sim"
lipo -create \
  "target/aarch64-apple-ios-sim/$profile/$lib" \
  "target/x86_64-apple-ios/$profile/$lib" \
  -output "$out/sim/$lib"

rm -rf "$here/VitalcoreFFI.xcframework"
xcodebuild -create-xcframework \
  -library "target/aarch64-apple-ios/$profile/$lib" -headers "$out/headers" \
  -library "$out/sim/$lib" -headers "$out/headers" \
  -output "$here/VitalcoreFFI.xcframework"
echo "built $here/VitalcoreFFI.xcframework and Sources/VitalcoreFFI/VitalcoreFFI.swift"
