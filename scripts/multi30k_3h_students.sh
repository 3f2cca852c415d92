#!/usr/bin/env bash
# The distillation gain of pipelines/multi30k-3h.yaml, measured without its teacher: the
# released student (learnt from the teacher's translations) against the same 6+1 student
# learnt from the original data for the same number of updates (1,449, the released
# student's count). Trains (or resumes) that baseline, exports it (CTranslate2 float32,
# int8 + vmap, ONNX int8), scores both students on the whole test set (greedy, beam 4, one
# thread, no vmap) and benchmarks them (benchmarks/experiments/multi30k-3h-students.yaml).
# Usage: scripts/multi30k_3h_students.sh [DATA_DIR]   (default: $NMT_DATA_DIR or ../shared/data)
# About 95 minutes of training on 2 AVX2 cores in float32 (~25 with bf16), 15 for the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${1:-${NMT_DATA_DIR:-../shared/data}}
# The 6+1 release of commit 7d9b498 (models/release/ has since held issue 18's model).
RELEASE=exports/multi30k-3h/release-6-1
if [ ! -f "$RELEASE/model.bin" ]; then
    mkdir -p "$RELEASE"
    git archive 7d9b498 models/release/multi30k-en-de-student |
        tar -x --strip-components=3 -C "$RELEASE"
fi
RUN=runs/pipelines/multi30k-3h/student-6-1-original
EXPORTS=exports/multi30k-3h
RESULTS=benchmarks/results/multi30k-3h
TEST=$DATA_DIR/multi30k/test_2016_flickr

# The baseline: the released student's config and tokenizer (the teacher's SentencePiece
# model, shipped with the release), original data, the released student's update count.
if [ ! -f "$RUN/averaged.pt" ]; then
    resume=(); [ -f "$RUN/last.pt" ] && resume=(--resume)
    python -m nmt train -c models/multi30k-student-6-1.yaml --data-dir "$DATA_DIR" \
        --set "run_dir=$RUN" --set "tokenizer.model=$RELEASE/spm.model" \
        --set train.max_minutes=0 --set train.max_steps=1449 --set train.save_every=100 \
        "${resume[@]}"
fi

mkdir -p "$EXPORTS"
[ -f "$EXPORTS/original.vmap" ] || python -m nmt vmap --model "$RUN" --data multi30k \
    --data-dir "$DATA_DIR" -o "$EXPORTS/original.vmap"
[ -d "$EXPORTS/student-6-1-original-int8" ] || python -m nmt export "$RUN" --int8 \
    --vmap "$EXPORTS/original.vmap" -o "$EXPORTS/student-6-1-original-int8"
[ -d "$EXPORTS/student-6-1-original-float32" ] || python -m nmt export "$RUN" \
    -o "$EXPORTS/student-6-1-original-float32"
[ -d "$EXPORTS/student-6-1-original-onnx-int8" ] || python -m nmt export "$RUN" --format onnx \
    --int8 -o "$EXPORTS/student-6-1-original-onnx-int8"

score() {  # EXPORT OUT_DIR: greedy and beam 4 over the whole test set, translations kept
    for beam in 1 4; do
        python -m nmt evaluate -m "$1" --src "$TEST.en" --ref "$TEST.de" --beam "$beam" \
            --threads 1 --no-vmap -o "$2/beam$beam" >/dev/null
        mv "$2/beam$beam/hyp.txt" "$2/test.beam$beam.de"
        mv "$2/beam$beam/scores.json" "$2/scores.beam$beam.json"
        rmdir "$2/beam$beam"
    done
}
score "$RELEASE" "$RESULTS/student-6-1/ct2-int8"
score "$EXPORTS/student-6-1-original-int8" "$RESULTS/student-6-1-original/ct2-int8"
# The baseline's run: config, summary, log, dev curve, PyTorch float32 test scores.
python benchmarks/report_run.py "$RUN" --data-dir "$DATA_DIR" --threads 1 \
    --name multi30k-3h/student-6-1-original >/dev/null

python -m nmt bench --config benchmarks/experiments/multi30k-3h-students.yaml --data-dir "$DATA_DIR"
