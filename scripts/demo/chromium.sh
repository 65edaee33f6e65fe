#!/usr/bin/env bash
# Headless Chromium for the report's screenshot test (`make test-demo`): Debian's `chromium`
# package, installed once if /usr/bin/chromium is missing. Prints the binary's path.
set -euo pipefail
BIN=${VITALCORE_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$BIN" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "chromium: $BIN is missing and installing it needs root (apt-get install -y chromium)" >&2
    exit 1
  fi
  echo "chromium: installing Debian's chromium package" >&2
  export DEBIAN_FRONTEND=noninteractive
  # apt may be busy with another install on a shared machine: wait for its lock.
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium >&2
fi
echo "$BIN"
