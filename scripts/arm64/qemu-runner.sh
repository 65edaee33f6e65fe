#!/usr/bin/env bash
# Cargo's runner for aarch64 test binaries: qemu-user with Debian's aarch64 libraries.
# Under qemu-user a program reads the host's /proc/cpuinfo (x86); ONNX Runtime's cpuinfo
# library then finds no ARM CPU description and crashes on a null pointer. So the binary
# runs in a private mount namespace (root: `unshare -m`) that sees cpuinfo of a two-core
# Cortex-A76 (a common phone core; its features are what qemu's default `max` CPU offers)
# in place of the host's. Nothing outside the namespace changes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
  exec unshare -m sh -c 'mount --bind "$0" /proc/cpuinfo && exec "$@"' \
    "$here/cpuinfo" "${qemu[@]}" "$@"
fi
echo "qemu-runner: no private mount namespace here (needs root and CAP_SYS_ADMIN): running" \
  "with the host's cpuinfo, on which ONNX Runtime's aarch64 library crashes" >&2
exec "${qemu[@]}" "$@"
