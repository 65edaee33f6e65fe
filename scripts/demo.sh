#!/usr/bin/env bash
# `make demo`: runs what exists end to end on real data.
# For now: the `vitalcore` CLI (release build) analyses every fetched real recording
# (.cache/recordings, filled by `make data`) and prints a table of its features.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${VITALCORE_CACHE:-.cache}
PY=${VITALCORE_PYTHON:-.venv/bin/python}
cargo build --quiet --release --locked -p vitalcore --features cli
BIN=target/release/vitalcore
shopt -s nullglob
metas=("$CACHE"/recordings/*.json)
if [ ${#metas[@]} -eq 0 ]; then
  echo "no recordings in $CACHE/recordings: run \`make data\` first" >&2
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for meta in "${metas[@]}"; do
  name=$(basename "$meta" .json)
  read -r signal rate < <("$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["signal"], m["rate_hz"])' "$meta")
  "$BIN" analyze --signal "$signal" --rate "$rate" --input "$CACHE/recordings/$name.csv" > "$out/$name.json"
done
"$PY" - "$out" <<'PYEOF'
import json, sys
from pathlib import Path
rows = []
for p in sorted(Path(sys.argv[1]).glob("*.json")):
    r = json.loads(p.read_text())
    f, q = r["features"], r["quality"]
    def v(k, fmt="{:.1f}"):
        return "-" if f.get(k) is None else fmt.format(f[k])
    rows.append([p.stem, r["signal"], f"{r['rate_hz']:.0f}",
                 f"{r['analysed_span_s'][1] - r['analysed_span_s'][0]:.0f}",
                 str(len(r["peaks"])), v("hr_mean"), v("sdnn"), v("rmssd"),
                 v("lf_hf_ratio", "{:.2f}"), v("sample_entropy", "{:.2f}"),
                 v("ectopic_fraction", "{:.2f}"),
                 f"{q['sqi']:.2f}{'' if q['acceptable'] else ' (low)'}",
                 f"{sum(1 for w in r['windows'] if w['acceptable'])}/{len(r['windows'])}"])
head = ["recording", "signal", "Hz", "s", "beats", "HR bpm", "SDNN ms", "RMSSD ms",
        "LF/HF", "SampEn", "ectopic", "SQI", "windows ok"]
w = [max(len(x) for x in col) for col in zip(head, *rows)]
for row in [head, ["-" * n for n in w], *rows]:
    print("  ".join(c.ljust(n) for c, n in zip(row, w)))
print(f"\nSQI threshold {json.loads(next(Path(sys.argv[1]).glob('*.json')).read_text())['quality']['threshold']}; "
      "windows ok = 60 s windows (30 s step) at or above it;\n"
      "per-window features are in the `vitalcore analyze` JSON output.")
PYEOF
