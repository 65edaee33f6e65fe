#!/usr/bin/env bash
# The ARM64 run: the signal, store and inference suites cross-built for
# aarch64-unknown-linux-gnu and run under qemu-user, so every `cfg(target_arch = "aarch64")`
# path (our graph kernels' aarch64 baseline, tract's NEON kernels, ring's ARMv8 code under
# the store's encryption, the DSP's float code) executes as it does on a phone's CPU.
# Idempotent:
#  - installs what is missing: the rustup target, Debian's gcc-aarch64-linux-gnu (linker and
#    C compiler for the bundled SQLite) and qemu-user;
#  - the parity tests compare with ONNX Runtime *on ARM64*: the aarch64 library from the
#    pinned onnxruntime wheel (PyPI, the same version as the host's), fetched once into
#    .cache/arm64 and loaded by the emulated test binaries.
# Usage: scripts/arm64/run.sh [cargo test args...]; CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=aarch64-unknown-linux-gnu
CACHE=${VITALCORE_CACHE:-$PWD/.cache}
PY=${VITALCORE_PYTHON:-$PWD/.venv/bin/python}

if ! rustup target list --installed | grep -qx "$TARGET"; then
  rustup target add "$TARGET"
fi
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
if [ ${#missing[@]} -gt 0 ]; then
  echo "arm64: installing ${missing[*]} (Debian packages)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

ort_version=$(grep -oP '^onnxruntime==\K[0-9.]+' requirements.txt)
ort_lib="$CACHE/arm64/onnxruntime-$ort_version/libonnxruntime.so.$ort_version"
if [ ! -f "$ort_lib" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_28_aarch64 --python-version 3.11 --dest "$tmp" \
    "onnxruntime==$ort_version"
  mkdir -p "$(dirname "$ort_lib")"
  "$PY" - "$tmp" "$ort_lib" "$ort_version" <<'PY'
import pathlib, sys, zipfile
src, dest, version = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
(wheel,) = src.glob("onnxruntime-*aarch64.whl")
with zipfile.ZipFile(wheel) as z:
    dest.write_bytes(z.read(f"onnxruntime/capi/libonnxruntime.so.{version}"))
PY
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/scripts/arm64/qemu-runner.sh"
export ORT_DYLIB_PATH="$ort_lib"
export RUST_LIB_BACKTRACE=0

# What runs: every suite of the DSP crate; the SDK's inference suites (native graph and
# tree evaluators, tract, parity with ONNX Runtime) and its store suites (encryption,
# durability, migrations, property tests). Left out as not architecture-specific and slow
# under emulation: the engine, HTTP sync and multi-process suites (they run on the host).
INFERENCE=(--test inference_graph --test inference_native --test inference_parity
           --test inference_model --test inference_trees)
STORE=(--test store_crypto --test store_api --test store_durability --test store_migrations
       --test store_props)
# The DSP crate optimised (opt-level 2, as dependencies already are in test builds): its
# real-recording suites take minutes unoptimised under emulation, seconds optimised.
CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo test --locked --target "$TARGET" -p vitalcore-signal "$@"
cargo test --locked --target "$TARGET" -p vitalcore --all-features "${INFERENCE[@]}" "${STORE[@]}" "$@"
# Not run here: the mobile configuration (no tract) for aarch64. Its native evaluators are
# the code above (the same source, run above on ARM64); what differs, refusing models that
# need tract, is architecture-independent and runs on the host (`make test-no-tract`). A
# second aarch64 build of the SDK would cost CI minutes for no ARM-specific path.
