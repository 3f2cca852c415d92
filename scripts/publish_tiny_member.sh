#!/usr/bin/env bash
# Publish a Transformer-tiny member trained in runs/tiny-MEMBER (a new one, or one trained on
# with nmt-train --resume and a larger train.max_steps) into models/multi30k-tiny/MEMBER as
# float16 safetensors. When it was trained on, the previous weights' evidence (scores,
# translations, summary, export info) moves to benchmarks/results/multi30k-tiny/MEMBER/stepN/
# (N: their step). The run's config, summary, log and test translations and scores (greedy
# and beam 4, PyTorch, 1 thread) go to benchmarks/results/multi30k-tiny/MEMBER/.
#
#   scripts/publish_tiny_member.sh MEMBER [TRAIN_LOG ...]   # RUN=runs/... overrides the folder
set -euo pipefail
cd "$(dirname "$0")/.."
member=$1
shift
run=${RUN:-runs/tiny-$member}
weights=models/multi30k-tiny/$member
results=benchmarks/results/multi30k-tiny/$member
step() { python -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$1"; }

new=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['steps'])" "$run/summary.json")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -e "$weights/nmt_export.json" ]; then  # trained on: keep the previous weights' evidence
    old=$(step "$weights/nmt_export.json")
    if [ "$old" = "$new" ]; then
        echo "$weights is already at step $new" >&2
        exit 1
    fi
    mkdir -p "$results/step$old"
    for f in "$results"/test.* "$results/summary.json" "$results/train.log"; do
        [ -e "$f" ] && mv "$f" "$results/step$old/"
    done
    cp "$weights/nmt_export.json" "$results/step$old/"
fi
nmt-export "$run" -o "$work/export" --format safetensors --quantization float16 > /dev/null
mkdir -p "$weights" "$results"
cp "$work/export/model.safetensors" "$work/export/nmt_export.json" "$weights/"
cp "$run/summary.json" "$run/log.jsonl" "$run/config.yaml" "$results/"
if [ $# -gt 0 ]; then cat "$@" > "$results/train.log"; fi

scripts/score_test.sh "$results" test -m "$weights"
