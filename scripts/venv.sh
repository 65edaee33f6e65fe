#!/usr/bin/env bash
# Creates (or refreshes) the project's Python venv with pinned versions.
# Usage: scripts/venv.sh VENV_DIR REQUIREMENTS
set -euo pipefail
venv=${1:-.venv}
req=${2:-requirements.txt}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip==24.3.1
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
