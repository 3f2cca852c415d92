#!/usr/bin/env bash
# Export the Multi30k small model to every engine and benchmark them (the export issue's table).
# Usage: scripts/export_multi30k.sh [DATA_DIR]   (default: $NMT_DATA_DIR or ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${1:-${NMT_DATA_DIR:-../shared/data}}
RUN=runs/multi30k-small
[ -f "$RUN/averaged.pt" ] || { echo "train first: nmt-train -c models/multi30k-small.yaml" >&2; exit 1; }
mkdir -p exports
[ -f exports/multi30k-small.vmap ] || python -m nmt vmap --model "$RUN" --data multi30k \
    --data-dir "$DATA_DIR" -o exports/multi30k-small.vmap
[ -d exports/multi30k-small-ct2 ] || python -m nmt export "$RUN" -o exports/multi30k-small-ct2
[ -d exports/multi30k-small-ct2-int8 ] || python -m nmt export "$RUN" --int8 \
    --vmap exports/multi30k-small.vmap -o exports/multi30k-small-ct2-int8
[ -d exports/multi30k-small-onnx ] || python -m nmt export "$RUN" --format onnx \
    -o exports/multi30k-small-onnx
[ -d exports/multi30k-small-onnx-int8 ] || python -m nmt export "$RUN" --format onnx --int8 \
    -o exports/multi30k-small-onnx-int8
python -m nmt bench --config benchmarks/export-multi30k.yaml --data-dir "$DATA_DIR"
