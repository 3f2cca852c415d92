#!/usr/bin/env bash
# Checkpoint averaging, measured on the Transformer-tiny members' last snapshots (issue 18's
# recipe sweep): for each member's run folder, the dev BLEU (Multi30k val, beam 4, 1 thread)
# of the last snapshot alone and of the average of the last 2, 5 and 10 (100 updates apart).
# Needs the run folders (runs/tiny-sN with checkpoints/step_8100..9000.pt; they are not in
# git). Writes DEST/sN.lastK.val.beam4.scores.json and DEST/summary.md.
#
#   benchmarks/experiments/tiny_averaging.sh [DEST] [MEMBER ...]   # default: RESULTS/averaging s1 s2 s3
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${1:-benchmarks/results/multi30k-tiny/averaging}
shift || true
members=("$@")
[ ${#members[@]} -gt 0 ] || members=(s1 s2 s3)
data=${NMT_DATA_DIR:-../shared/data}/multi30k
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
echo "| member | last | last 2 | last 5 | last 10 |" > "$work/summary.md"
echo "|---|---|---|---|---|" >> "$work/summary.md"
for m in "${members[@]}"; do
    ckpts=$(ls runs/tiny-"$m"/checkpoints/step_*.pt | sort -t_ -k2 -n)
    row="| $m"
    for k in 1 2 5 10; do
        mapfile -t last < <(echo "$ckpts" | tail -n "$k")
        if [ "$k" = 1 ]; then model=${last[0]}; else
            model=$work/$m-last$k.pt
            nmt-average "${last[@]}" -o "$model" > /dev/null
        fi
        nmt-evaluate -m "$model" --beam 4 --threads 1 --src "$data/val.en" --ref "$data/val.de" \
            -o "$work/$m-$k" > /dev/null
        cp "$work/$m-$k/scores.json" "$dest/$m.last$k.val.beam4.scores.json"
        bleu=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['bleu'])" "$work/$m-$k/scores.json")
        echo "$m last $k: $bleu"
        row="$row | $bleu"
    done
    echo "$row |" >> "$work/summary.md"
done
cp "$work/summary.md" "$dest/summary.md"
