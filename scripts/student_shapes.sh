#!/usr/bin/env bash
# Issue 36's student shapes, measured as a Pareto: on the four-member teacher's distillation of
# Multi30k (the committed members s1 + s2 + s3 + s1-dropout0.2, beam 4), students of several
# shapes are trained (two at a time, one thread each), exported to CTranslate2 int8 and
# benchmarked with the teacher in one nmt-bench run (benchmarks/experiments/students.yaml);
# benchmarks/students.py then scores every model on the whole test_2016_flickr (greedy and
# beam 4, one thread) and draws and tables the Pareto. Every step resumes or skips what is done.
#
#   scripts/student_shapes.sh [STAGE ...]   # distil train export runs bench zoo (default all)
#
# Shapes that share the members' width start from member s2 (shrink and fine-tune: the child
# keeps the parent's layers named by train.init_*_layers) with the recipe of the released
# student (models/multi30k-tiny-distilled.yaml, 1,500 updates, float32); wider ones have no
# parent and train from scratch with the members' recipe (models/multi30k-tiny.yaml) and
# tokenizer, in bf16 autocast where the CPU has it, for 2,000 updates.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${NMT_DATA_DIR:-../shared/data}
members=models/multi30k-tiny
distilled=runs/distilled-x4
runs=runs/students
exports=runs/exports/students
results=benchmarks/results/students
release=models/release/multi30k-en-de-student
stages=("${@:-distil train export runs bench zoo}")
stages=" ${stages[*]} "
say() { echo "$(date -u +%T) $*"; }

parent=(-c models/multi30k-tiny-distilled.yaml)
scratch=(-c models/multi30k-tiny.yaml --set tokenizer.model=$members/spm.model
    --set train.precision=auto --set train.max_steps=2000 --set train.warmup_steps=500)
declare -A shape=(
    [4-4-d128]="${parent[*]}"
    [4-2-d128]="${parent[*]} --set model.dec_layers=2 --set train.init_decoder_layers=[0,3]"
    [4-1-d128]="${parent[*]} --set model.dec_layers=1 --set train.init_decoder_layers=[0]"
    [2-1-d128]="${parent[*]} --set model.enc_layers=2 --set train.init_encoder_layers=[0,3]
        --set model.dec_layers=1 --set train.init_decoder_layers=[0]"
    [6-1-d256]="${scratch[*]} --set model.d_model=256 --set model.ffn=1024
        --set model.enc_layers=6 --set model.dec_layers=1 --set model.dropout=0.2"
    [6-2-d192]="${scratch[*]} --set model.d_model=192 --set model.ffn=768
        --set model.enc_layers=6 --set model.dec_layers=2 --set model.dropout=0.2"
)
# Two lanes of one thread each, the longest runs first.
lanes=("6-1-d256 4-1-d128 2-1-d128" "6-2-d192 4-4-d128 4-2-d128")
names=(${lanes[0]} ${lanes[1]})

train() {  # NAME: train (or resume, or skip when finished) one student
    local run=$runs/$1
    [ -f "$run/summary.json" ] && return
    local - resume=()
    set -f  # the shapes' [0,3] are values, not file patterns
    [ -f "$run/last.pt" ] && resume=(--resume)
    # shellcheck disable=SC2086
    nmt-train ${shape[$1]} --data-dir "$distilled" --set "run_dir=$run" --set train.threads=1 \
        "${resume[@]}" > "$runs/$1.log" 2>&1
    say "trained $1"
}

if [[ $stages == *" distil "* ]]; then
    say "distil: the four members translate the training set together (beam 4)"
    nmt-distill -t "$members/s1" -t "$members/s2" -t "$members/s3" -t "$members/s1-dropout0.2" \
        --data multi30k --data-dir "$data" -o "$distilled" --beam 4 --workers 2 --threads 1
fi
if [[ $stages == *" train "* ]]; then
    say "train: ${names[*]} (two at a time, one thread each)"
    mkdir -p "$runs"
    pids=()
    for lane in "${lanes[@]}"; do
        (for name in $lane; do train "$name"; done) &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done  # a failed lane fails the stage
fi
if [[ $stages == *" export "* ]]; then
    say "export: CTranslate2 int8"
    for name in "${names[@]}"; do
        [ -f "$exports/$name/model.bin" ] || nmt-export "$runs/$name" -o "$exports/$name" --int8
    done
fi
if [[ $stages == *" runs "* ]]; then
    say "runs: each student's config, summary and dev curve; the distillation's statistics"
    for name in "${names[@]}"; do
        mkdir -p "$results/runs/$name"
        cp "$runs/$name"/{config.yaml,summary.json,log.jsonl} "$results/runs/$name/"
    done
    cp "$distilled"/stats.json "$distilled"/provenance.json "$results/"
    # The release before this run, scored here too (once: the release may since be replaced).
    [ -f "$results/released-before/test.beam4.scores.json" ] || scripts/score_test.sh "$results/released-before" test -m "$release" --no-vmap
fi
if [[ $stages == *" bench "* ]]; then
    say "bench: the teacher and every student in one run (nothing else may run meanwhile)"
    nmt-bench --config benchmarks/experiments/students.yaml --data-dir "$data"
fi
if [[ $stages == *" zoo "* ]]; then
    say "zoo: every model translates the whole test set; the Pareto table and plot"
    python benchmarks/students.py --data-dir "$data"
fi
