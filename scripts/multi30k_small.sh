#!/usr/bin/env bash
# The trainer's reference run: train models/multi30k-small.yaml (40 min on 2 CPU cores),
# then translate and score the test set and write benchmarks/results/multi30k-small/.
# Usage: scripts/multi30k_small.sh [DATA_DIR]   (default: $NMT_DATA_DIR or ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR="${1:-${NMT_DATA_DIR:-../shared/data}}"

if [ -f runs/multi30k-small/last.pt ] && [ ! -f runs/multi30k-small/summary.json ]; then
    nmt-train --config models/multi30k-small.yaml --data-dir "$DATA_DIR" --resume
elif [ ! -f runs/multi30k-small/summary.json ]; then
    nmt-train --config models/multi30k-small.yaml --data-dir "$DATA_DIR"
fi
python benchmarks/report_run.py runs/multi30k-small --data-dir "$DATA_DIR"
