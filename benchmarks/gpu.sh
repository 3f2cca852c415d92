#!/usr/bin/env bash
# Benchmark the Multi30k small model on one CUDA GPU (grid: benchmarks/gpu.yaml):
# CTranslate2 float16 and int8_float16, PyTorch float16, beam 1 and 4, Multi30k and long
# newstest2014 sentences, GPU memory included, after a multi-GPU training smoke test
# (torchrun over every visible GPU). Under 8 minutes: the grid stops starting
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
# Multi-GPU training smoke test (issue 17): the tiny Multi30k recipe on every visible GPU
# through torchrun (DDP over NCCL when there are two or more), 40 updates, then --resume to
# 60; summary.json must say 60 steps and as many processes as GPUs. About a minute.
NGPU=$(python -c "import torch; print(torch.cuda.device_count())")
DDP_RUN=$(mktemp -d)/ddp-smoke
DDP_SET=(--set run_dir="$DDP_RUN" --set train.device=cuda --set train.precision=auto
         --set tokenizer.model=models/multi30k-tiny/spm.model --set train.valid_every=20
         --set train.save_every=20 --set train.average_last=2)
torchrun --standalone --nproc_per_node "$NGPU" -m nmt train \
    --config models/multi30k-tiny.yaml "${DDP_SET[@]}" --set train.max_steps=40
torchrun --standalone --nproc_per_node "$NGPU" -m nmt train --resume \
    --config models/multi30k-tiny.yaml "${DDP_SET[@]}" --set train.max_steps=60
python - "$DDP_RUN/summary.json" "$NGPU" <<'PY'
import json
import sys

summary = json.load(open(sys.argv[1]))
gpus = int(sys.argv[2])
assert summary["steps"] == 60 and summary["world_size"] == gpus, summary
print(f"gpu.sh: DDP smoke test passed: {gpus} process(es), {summary['device']}, "
      f"{summary['precision']}, {summary['mean_tgt_tokens_per_s']:.0f} target tokens/s, "
      f"dev BLEU {summary['best_valid_bleu']:.2f} after 60 updates")
PY

if [ ! -d "$RUN" ]; then
    echo "gpu.sh: no run folder $RUN (nmt-train --config models/multi30k-small.yaml)" >&2
    exit 2
fi
[ -d "$EXPORT" ] || python -m nmt export "$RUN" -o "$EXPORT"
python -m nmt bench --config benchmarks/gpu.yaml --device cuda -o "$OUT"
echo "gpu.sh: report in $OUT/report.md"
