#!/usr/bin/env bash
# Test scores of the committed Transformer-tiny members (models/multi30k-tiny/) and their
# ensembles on Multi30k test_2016_flickr, greedy and beam 4, PyTorch from the float16
# weights, 1 thread: the translations and scores.json (with sacrebleu signatures) go to
# benchmarks/results/multi30k-tiny/{MEMBER,ensemble}/.
#
#   benchmarks/tiny_ensembles.sh [MEMBER ...]   # default: s2; the ensembles always
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/results/multi30k-tiny
M=models/multi30k-tiny

evaluate() {  # NAME DEST MODEL...
    local name=$1 dest=$2; shift 2
    local models=()
    for m in "$@"; do models+=(-m "$M/$m"); done
    scripts/score_test.sh "$dest" "$name" "${models[@]}"
}

for member in "${@:-s2}"; do
    evaluate test "$OUT/$member" "$member"
done
evaluate s1+s2 "$OUT/ensemble" s1 s2
evaluate s1+s2+mix3 "$OUT/ensemble" s1 s2 mix3
