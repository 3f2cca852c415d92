#!/usr/bin/env bash
# Test scores of the committed Transformer-tiny members (models/multi30k-tiny/) and their
# ensembles on Multi30k test_2016_flickr, greedy and beam 4, PyTorch from the float16
# weights, 1 thread: the translations and scores.json (with sacrebleu signatures) go to
# benchmarks/results/multi30k-tiny/{MEMBER,ensemble}/.
#
#   benchmarks/tiny_ensembles.sh [MEMBER ...]   # default: s2; the ensembles always
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${NMT_DATA_DIR:-../shared/data}/multi30k
OUT=benchmarks/results/multi30k-tiny
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
M=models/multi30k-tiny

evaluate() {  # NAME DEST MODEL...
    local name=$1 dest=$2; shift 2
    local models=()
    for m in "$@"; do models+=(-m "$M/$m"); done
    for beam in 1 4; do
        nmt-evaluate "${models[@]}" --beam "$beam" --threads 1 \
            --src "$DATA/test_2016_flickr.en" --ref "$DATA/test_2016_flickr.de" \
            -o "$W/$name-$beam" > /dev/null
        mkdir -p "$dest"
        cp "$W/$name-$beam/hyp.txt" "$dest/$name.beam$beam.de"
        cp "$W/$name-$beam/scores.json" "$dest/$name.beam$beam.scores.json"
        python -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[2], 'beam', sys.argv[3], s['bleu'], s['chrf'])" \
            "$dest/$name.beam$beam.scores.json" "$name" "$beam"
    done
}

for member in "${@:-s2}"; do
    evaluate test "$OUT/$member" "$member"
done
evaluate s1+s2 "$OUT/ensemble" s1 s2
evaluate s1+s2+mix3 "$OUT/ensemble" s1 s2 mix3
