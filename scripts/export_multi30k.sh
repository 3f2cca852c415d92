#!/usr/bin/env bash
# Export a Multi30k model to every engine and benchmark them (the export issue's table).
# Usage: scripts/export_multi30k.sh [DATA_DIR]   (default: $NMT_DATA_DIR or ../shared/data)
#
# By default the model is runs/multi30k-small (nmt-train -c models/multi30k-small.yaml) and
# the report goes to benchmarks/results/export-multi30k. Another run folder of the same
# dataset: RUN=runs/... NAME=... OUT=benchmarks/results/... scripts/export_multi30k.sh; the
# grid benchmarks/experiments/export-multi30k.yaml then measures RUN's exports (--set models[N].path=...).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${1:-${NMT_DATA_DIR:-../shared/data}}
RUN=${RUN:-runs/multi30k-small}
NAME=${NAME:-multi30k-small}
OUT=${OUT:-benchmarks/results/export-multi30k}
[ -f "$RUN/summary.json" ] || { echo "$RUN: no trained run; train first: nmt-train -c models/multi30k-small.yaml" >&2; exit 1; }
E=exports/$NAME
mkdir -p exports "$OUT"
[ -f "$E.vmap" ] || python -m nmt vmap --model "$RUN" --data multi30k --data-dir "$DATA_DIR" -o "$E.vmap"
[ -d "$E-ct2" ] || python -m nmt export "$RUN" -o "$E-ct2"
[ -d "$E-ct2-int8" ] || python -m nmt export "$RUN" --int8 --vmap "$E.vmap" -o "$E-ct2-int8"
[ -d "$E-onnx" ] || python -m nmt export "$RUN" --format onnx -o "$E-onnx"
[ -d "$E-onnx-int8" ] || python -m nmt export "$RUN" --format onnx --int8 -o "$E-onnx-int8"
GRID=benchmarks/experiments/export-multi30k.yaml
# The grid's models, in order: pytorch, ct2, ct2-int8, ct2-int8-x2, onnx, onnx-int8.
SETS=()
if [ "$RUN" != runs/multi30k-small ] || [ "$NAME" != multi30k-small ]; then
    i=0
    for path in "$RUN" "$E-ct2" "$E-ct2-int8" "$E-ct2-int8" "$E-onnx" "$E-onnx-int8"; do
        SETS+=(--set "models[$i].path=$path")
        i=$((i + 1))
    done
    SETS+=(--set "name=$(basename "$OUT")")
fi
python -m nmt bench --config "$GRID" "${SETS[@]}" --data-dir "$DATA_DIR" -o "$OUT"
