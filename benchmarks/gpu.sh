#!/usr/bin/env bash
# Benchmark the Multi30k small model on one CUDA GPU (grid: benchmarks/gpu.yaml):
# CTranslate2 float16 and int8_float16, PyTorch float16, beam 1 and 4, Multi30k and long
# newstest2014 sentences, GPU memory included. Under 8 minutes: the grid stops starting
# cells after 6; run the script again to measure what is left (measured cells are skipped).
#
#   benchmarks/gpu.sh [REPORT_DIR]        # default: benchmarks/results/bench-multi30k-gpu
#
# Needs the project installed with a CUDA build of torch (pip install -e .), the trained run
# runs/multi30k-small (nmt-train --config models/multi30k-small.yaml) and the test sets
# ($NMT_DATA_DIR, else ../shared/data, else downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/bench-multi30k-gpu}
RUN=runs/multi30k-small
EXPORT=exports/multi30k-small-ct2
if [ -z "${NMT_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
    export NMT_DATA_DIR="$(cd ../shared/data && pwd)"
fi

python - <<'PY'
import sys

import ctranslate2
import torch

if not torch.cuda.is_available() or ctranslate2.get_cuda_device_count() == 0:
    sys.exit("gpu.sh: no CUDA device visible to torch and CTranslate2")
print(f"gpu.sh: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
      f"ctranslate2 {ctranslate2.__version__}")
PY
if [ ! -d "$RUN" ]; then
    echo "gpu.sh: no run folder $RUN (nmt-train --config models/multi30k-small.yaml)" >&2
    exit 2
fi
[ -d "$EXPORT" ] || python -m nmt export "$RUN" -o "$EXPORT"
python -m nmt bench --config benchmarks/gpu.yaml --device cuda -o "$OUT"
echo "gpu.sh: report in $OUT/report.md"
