#!/usr/bin/env bash
# Translate Multi30k test_2016_flickr greedy and beam 4 (nmt-evaluate, 1 thread) and keep the
# translations and scores (with sacrebleu signatures) as DEST/NAME.beam{1,4}.de and
# DEST/NAME.beam{1,4}.scores.json; prints one line per beam. The remaining arguments go to
# nmt-evaluate: the model(s) (several -m: an ensemble) and options such as --no-vmap.
#
#   scripts/score_test.sh DEST NAME -m MODEL [-m MODEL ...] [--no-vmap]
set -euo pipefail
dest=$1 name=$2
shift 2
data=${NMT_DATA_DIR:-../shared/data}/multi30k
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
for beam in 1 4; do
    nmt-evaluate "$@" --beam "$beam" --threads 1 \
        --src "$data/test_2016_flickr.en" --ref "$data/test_2016_flickr.de" \
        -o "$work/$beam" > /dev/null
    cp "$work/$beam/hyp.txt" "$dest/$name.beam$beam.de"
    cp "$work/$beam/scores.json" "$dest/$name.beam$beam.scores.json"
    python -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[2], 'beam', sys.argv[3], s['bleu'], s['chrf'])" \
        "$dest/$name.beam$beam.scores.json" "$dest/$name" "$beam"
done
