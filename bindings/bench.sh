#!/usr/bin/env bash
# Size of the shipped cdylib and per-call overhead of the bindings from Kotlin and Python.
# Run by `make bench` (figures in BENCHMARKS.md, section "Bindings: size and call overhead").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VITALCORE_PYTHON:-.venv/bin/python}
out=target/bench-bindings
rm -rf "$out" && mkdir -p "$out"

# 1. Size: the shipped builds (profile release-ffi, no test exports), stripped as packaging
#    strips them: the mobile one (Android, iOS: no tract, --no-default-features) and the one
#    with tract (the general ONNX evaluator, as the Python wheel has it).
cargo build -q -p vitalcore-ffi --locked --profile release-ffi --no-default-features
cp target/release-ffi/libvitalcore_ffi.so "$out/mobile.so"
cargo build -q -p vitalcore-ffi --locked --profile release-ffi
cp target/release-ffi/libvitalcore_ffi.so "$out/tract.so"
strip -s -o "$out/mobile.stripped.so" "$out/mobile.so"
strip -s -o "$out/tract.stripped.so" "$out/tract.so"
size() { stat -c %s "$1"; }
echo "BENCH size release-ffi_mobile_unstripped_bytes=$(size "$out/mobile.so")"
echo "BENCH size release-ffi_mobile_stripped_bytes=$(size "$out/mobile.stripped.so")"
echo "BENCH size release-ffi_with_tract_stripped_bytes=$(size "$out/tract.stripped.so")"

# 2. Overhead: the mobile release-ffi library with the test exports (the Kotlin test sources
#    use them), bindings generated from that very library.
cargo build -q -p vitalcore-ffi --locked --profile release-ffi --no-default-features --features testing
cargo build -q -p vitalcore-ffi --locked --features cli,testing --bin uniffi-bindgen
lib="$out/lib"
mkdir -p "$lib" && cp target/release-ffi/libvitalcore_ffi.so "$lib/"
for lang in kotlin python; do
  target/debug/uniffi-bindgen generate --no-format --library "$lib/libvitalcore_ffi.so" \
    --language "$lang" --out-dir "$out/gen/$lang" >/dev/null
done
cp "$out/gen/python/vitalcore_ffi.py" "$lib/"
"$PY" bindings/bench_overhead.py "$lib/vitalcore_ffi.py"
m2=.cache/m2
offline=""
[ -f "$m2/.complete" ] && offline="-o"
mvn -B -q $offline -Dmaven.repo.local="$PWD/$m2" -f android/jvm-tests/pom.xml \
  -Dvitalcore.generated.dir="$PWD/$out/gen/kotlin" -Dvitalcore.lib.dir="$PWD/$lib" \
  -Dtest=OverheadBenchmark -Dsurefire.failIfNoSpecifiedTests=false test | grep -o 'BENCH.*' || {
    echo "Kotlin benchmark failed" >&2; exit 1; }
