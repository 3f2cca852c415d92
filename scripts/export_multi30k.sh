#!/usr/bin/env bash
# Export a Multi30k model to every engine and benchmark them (the export issue's table).
# Usage: scripts/export_multi30k.sh [DATA_DIR]   (default: $NMT_DATA_DIR or ../shared/data)
#
# By default the model is runs/multi30k-small (nmt-train -c models/multi30k-small.yaml) and
# the report goes to benchmarks/results/export-multi30k. Another run folder of the same
# dataset: RUN=runs/... NAME=... OUT=benchmarks/results/... scripts/export_multi30k.sh; the
# grid benchmarks/export-multi30k.yaml is then written to OUT/grid.yaml with RUN's paths.
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
GRID=benchmarks/export-multi30k.yaml
if [ "$RUN" != runs/multi30k-small ] || [ "$NAME" != multi30k-small ]; then
    sed -e "s#runs/multi30k-small#$RUN#g" -e "s#exports/multi30k-small#$E#g" \
        -e "s#^output_dir: .*#output_dir: $OUT#" -e "s#^name: [^ ]*#name: $(basename "$OUT")#" \
        "$GRID" > "$OUT/grid.yaml"
    GRID=$OUT/grid.yaml
fi
python -m nmt bench --config "$GRID" --data-dir "$DATA_DIR" -o "$OUT"
