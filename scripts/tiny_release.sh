#!/usr/bin/env bash
# Issue 18's release candidate from the committed Transformer-tiny members: the ensemble
# s1+s2+s3 (PyTorch, beam 4) translates the Multi30k training set (nmt-distill), a member is
# fine-tuned on its output (models/multi30k-tiny-distilled.yaml), exported to CTranslate2
# int8 and scored on test_2016_flickr (greedy and beam 4, 1 thread); then one nmt-bench run
# measures the ensemble, the members and the student side by side
# (benchmarks/experiments/multi30k-tiny.yaml), and the zoo table of them all (scripts/tiny_zoo.py; with
# --release NOTES.md it also replaces models/release/). Every step resumes or skips what is done.
#
#   scripts/tiny_release.sh [STAGE ...]   # distil train export score bench zoo (default all)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${NMT_DATA_DIR:-../shared/data}
members=models/multi30k-tiny
distilled=runs/distilled-x3
run=runs/multi30k-tiny-distilled-x3
results=benchmarks/results/multi30k-tiny/distilled
stages=("${@:-distil train export score bench zoo}")
stages=" ${stages[*]} "
say() { echo "$(date -u +%T) $*"; }

if [[ $stages == *" distil "* ]]; then
    say "distil: the ensemble s1+s2+s3 translates the training set (beam 4)"
    nmt-distill -t "$members/s1" -t "$members/s2" -t "$members/s3" --data multi30k --data-dir "$data" \
        -o "$distilled" --beam 4 --workers 2 --threads 1
fi
if [[ $stages == *" train "* ]]; then
    say "train: a member fine-tuned on the distilled corpus"
    resume=()
    if [ -f "$run/last.pt" ]; then resume=(--resume); fi
    nmt-train --config models/multi30k-tiny-distilled.yaml --data-dir "$distilled" "${resume[@]}"
fi
if [[ $stages == *" export "* ]]; then
    say "export: CTranslate2 int8 (the student, and member s1 for comparison)"
    nmt-export "$run" -o runs/exports/tiny-distilled-int8 --int8 --force
    nmt-export "$members/s1" -o runs/exports/tiny-s1-int8 --int8 --force
fi
if [[ $stages == *" score "* ]]; then
    say "score: the student's test translations"
    scripts/score_test.sh "$results" test -m runs/exports/tiny-distilled-int8 --no-vmap
    cp "$run/summary.json" "$run/config.yaml" "$run/log.jsonl" "$results/"
    cp "$distilled"/*.json "$results/" 2>/dev/null || true
fi
if [[ $stages == *" bench "* ]]; then
    say "bench: ensemble, members and student in one run (nothing else may run meanwhile)"
    nmt-bench --config benchmarks/experiments/multi30k-tiny.yaml --data-dir "$data"
fi
if [[ $stages == *" zoo "* ]]; then
    say "zoo: every model's test translations, scores and speeds in one table"
    python scripts/tiny_zoo.py --data-dir "$data"
fi
