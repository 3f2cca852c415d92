#!/usr/bin/env bash
# Issue 18 trial: can a quick start that distils from the committed teacher member
# (models/multi30k-tiny/s1, 35.56 BLEU beam 4) instead of training a teacher give a
# student >= 25 BLEU (greedy, test_2016_flickr) in <= 25 minutes on a 2-core AVX2-only CPU?
# Steps, each timed: CTranslate2 int8 export of the member; distillation of Multi30k's 29,000
# training sentences (beam 4, 2 workers x 1 thread); a 4+1 d128 student (the member's
# encoder shape, one decoder layer) trained on the distilled corpus by 2 DDP processes for
# STEPS updates of 2 x 2,048 tokens; its int8 export; greedy and beam 4 test scores.
#
#   benchmarks/experiments/quickstart_trial.sh [WORK] [STEPS]   # default /tmp/quickstart-trial 1600
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${1:-/tmp/quickstart-trial}
STEPS=${2:-1600}
DATA=${NMT_DATA_DIR:-../shared/data}
OUT=benchmarks/results/quickstart-trial
mkdir -p "$W" "$OUT"
t0=$(date +%s)
stamp() { echo "$1 $(( $(date +%s) - t0 ))" | tee -a "$OUT/timings.txt"; }
: > "$OUT/timings.txt"
lscpu | grep -E "Model name|^CPU\(s\)" > "$OUT/machine.txt"
grep -o -w -E "avx2|avx512[a-z_]*|fma|avx_vnni|amx[a-z_]*" /proc/cpuinfo | sort -u | tr '\n' ' ' >> "$OUT/machine.txt"

python -m nmt export models/multi30k-tiny/s1 -o "$W/teacher-int8" --int8
stamp export_teacher
python -m nmt distill --teacher "$W/teacher-int8" --data multi30k --data-dir "$DATA" \
    -o "$W/distilled" --beam 4 --workers 2 --threads 1
stamp distill
torchrun --standalone --nproc_per_node 2 -m nmt train --config models/multi30k-tiny.yaml \
    --data-dir "$W/distilled" --set run_dir="$W/student" \
    --set tokenizer.model=models/multi30k-tiny/spm.model --set model.dec_layers=1 \
    --set model.dropout=0.1 --set train.max_steps="$STEPS" --set train.warmup_steps=400 \
    --set train.batch_tokens=2048 --set train.valid_every=400 --set train.save_every=100 \
    --set train.keep_last=5 --set train.average_last=5
stamp train_student
python -m nmt export "$W/student" -o "$W/student-int8" --int8
stamp export_student
for beam in 1 4; do
    python -m nmt evaluate -m "$W/student-int8" --beam $beam --threads 2 \
        --src "$DATA/multi30k/test_2016_flickr.en" --ref "$DATA/multi30k/test_2016_flickr.de" \
        -o "$W/eval-beam$beam"
    cp "$W/eval-beam$beam/scores.json" "$OUT/student-int8.beam$beam.scores.json"
    cp "$W/eval-beam$beam/hyp.txt" "$OUT/student-int8.beam$beam.de"
done
stamp evaluate
cp "$W/student/summary.json" "$W/student/config.yaml" "$W/student/log.jsonl" "$OUT/"
cp "$W/distilled/stats.json" "$OUT/distilled-stats.json"
cat "$OUT/timings.txt"
