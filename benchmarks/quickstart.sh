#!/usr/bin/env bash
# The README's main job, measured as a new user runs it: `nmt-pipeline pipelines/quickstart.yaml`
# into a fresh root, timed end to end (its estimate is in the log), then its evidence published
# to benchmarks/results/quickstart/ (benchmarks/publish_pipeline.py: configs, stage results,
# logs, zoo, benchmark; no weights) with the machine, the wall time and the pipeline's log.
# Run it with nothing else on the machine.
#
#   benchmarks/quickstart.sh [ROOT]    # default runs/quickstart-measured (must not exist)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-runs/quickstart-measured}
DATA=${NMT_DATA_DIR:-../shared/data}
OUT=benchmarks/results/quickstart
if [ -e "$ROOT" ]; then echo "error: $ROOT exists; give a fresh root" >&2; exit 2; fi
mkdir -p "$(dirname "$ROOT")"
LOG="$ROOT.log"
load=$(cut -d" " -f1-3 /proc/loadavg)
start=$(date +%s)
nmt-pipeline pipelines/quickstart.yaml --data-dir "$DATA" --set root="$ROOT" 2>&1 | tee "$LOG"
seconds=$(( $(date +%s) - start ))
rm -rf "$OUT.new" && mkdir -p "$OUT.new"
python benchmarks/publish_pipeline.py "$ROOT" "$OUT.new" --config pipelines/quickstart.yaml
{
    echo "wall_seconds: $seconds"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse HEAD)"
    lscpu | grep -E "^Model name|^CPU\(s\)" | sed 's/  */ /g'
    echo "instruction sets: $(grep -o -w -E 'avx2|avx512[a-z_]*|fma|avx_vnni|amx[a-z_]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "load average at the start: $load"
} > "$OUT.new/run.txt"
cp "$LOG" "$OUT.new/pipeline.log"
[ -f "$OUT/README.md" ] && cp "$OUT/README.md" "$OUT.new/README.md"
rm -rf "$OUT" && mv "$OUT.new" "$OUT"
echo "quick start: $seconds s; evidence in $OUT"
