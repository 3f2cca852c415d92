#!/usr/bin/env bash
# Test scores of committed Transformer-tiny members (models/multi30k-tiny/) and of ensembles of
# them on Multi30k test_2016_flickr, greedy and beam 4, PyTorch from the float16 weights,
# 1 thread: the translations and scores.json (with sacrebleu signatures) go to
# benchmarks/results/multi30k-tiny/MEMBER/test.* or .../ensemble/A+B.*.
#
#   benchmarks/experiments/tiny_ensembles.sh [MEMBER | A+B[+C...] ...]   # default: s1+s2+s3
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=benchmarks/results/multi30k-tiny
M=models/multi30k-tiny

for spec in "${@:-s1+s2+s3}"; do
    models=()
    IFS=+ read -ra members <<< "$spec"
    for m in "${members[@]}"; do models+=(-m "$M/$m"); done
    if [ ${#members[@]} -eq 1 ]; then
        scripts/score_test.sh "$OUT/$spec" test "${models[@]}"
    else
        scripts/score_test.sh "$OUT/ensemble" "$spec" "${models[@]}"
    fi
done
