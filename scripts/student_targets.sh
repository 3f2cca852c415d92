#!/usr/bin/env bash
# Issue 36's "n-best or sampled teacher outputs as extra targets", measured on the released
# student's shape (4+4 d128 from member s2, models/multi30k-tiny-distilled.yaml, 1,500 updates,
# float32): the same student trained on other targets from the same four-member teacher.
#
#   top1      the teacher's best translation (scripts/student_shapes.sh's runs/distilled-x4)
#   mix       the original pairs, then top1's (nmt-distill --mix)
#   closest   of the teacher's 4 best, the one nearest the reference (--nbest 4 --select closest)
#   all       the teacher's 4 best, every different one (--nbest 4 --select all)
#   word-kd   top1, and the four members' next-token distributions as half the loss
#             (word-level distillation: train.kd_teachers, train.kd_weight 0.5)
#
# Each is exported int8 and scored on the whole test_2016_flickr (greedy and beam 4, 1 thread)
# into benchmarks/results/students/targets/. Every step skips what is done.
#
#   scripts/student_targets.sh [STAGE ...]   # distil train score (default all)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${NMT_DATA_DIR:-../shared/data}
members=models/multi30k-tiny
runs=runs/students-x
results=benchmarks/results/students/targets
stages=("${@:-distil train score}")
stages=" ${stages[*]} "
say() { echo "$(date -u +%T) $*"; }

teachers=(-t "$members/s1" -t "$members/s2" -t "$members/s3" -t "$members/s1-dropout0.2")
distil() {  # OUTPUT FLAG...: the four members' translation of Multi30k (beam 4)
    local out=$1
    shift
    nmt-distill "${teachers[@]}" --data multi30k --data-dir "$data" -o "$out" --beam 4 \
        --workers 2 --threads 1 "$@"
}
declare -A corpus=(
    [top1]="runs/distilled-x4 --set data.dataset=multi30k"
    [mix]="runs/distilled-x4 --set data.dataset= --set data.train=mix"
    [closest]="runs/distilled-x4-nbest4 --set data.dataset=multi30k"
    [all]="runs/distilled-x4-nbest4-all --set data.dataset=multi30k"
    [word-kd]="runs/distilled-x4 --set data.dataset=multi30k --set train.kd_weight=0.5
        --set train.kd_teachers=[$members/s1,$members/s2,$members/s3,$members/s1-dropout0.2]"
)
names=(mix closest all word-kd)  # top1 is student_shapes.sh's 4-4-d128

if [[ $stages == *" distil "* ]]; then
    say "distil: top 1 (and mix), then the 4 best; the 'all' folder re-selects the same translation"
    distil runs/distilled-x4 --mix
    distil runs/distilled-x4-nbest4 --nbest 4 --select closest
    if [ ! -f runs/distilled-x4-nbest4-all/raw.json ]; then
        mkdir -p runs/distilled-x4-nbest4-all
        cp -p runs/distilled-x4-nbest4/{raw.*,.nmt-output.json} runs/distilled-x4-nbest4-all/
    fi
    distil runs/distilled-x4-nbest4-all --nbest 4 --select all
fi
if [[ $stages == *" train "* ]]; then
    set -f  # the teachers' [a,b] is a value, not a file pattern
    mkdir -p "$runs"
    for name in "${names[@]}"; do
        run=$runs/4-4-$name
        [ -f "$run/summary.json" ] && continue
        resume=()
        [ -f "$run/last.pt" ] && resume=(--resume)
        read -r -d '' dir sets <<< "${corpus[$name]}" || true
        say "train: 4-4-$name on $dir"
        # shellcheck disable=SC2086
        nmt-train -c models/multi30k-tiny-distilled.yaml --data-dir "$dir" $sets \
            --set "run_dir=$run" --set train.threads=2 "${resume[@]}" > "$runs/4-4-$name.log" 2>&1
    done
    set +f
fi
if [[ $stages == *" score "* ]]; then
    test_src=$data/multi30k/test_2016_flickr.en
    test_ref=$data/multi30k/test_2016_flickr.de
    for name in "${names[@]}"; do
        run=$runs/4-4-$name export=runs/exports/students/4-4-$name out=$results/4-4-$name
        [ -f "$export/model.bin" ] || nmt-export "$run" -o "$export" --int8
        mkdir -p "$out"
        cp "$run/config.yaml" "$run/summary.json" "$out/"
        [ -f "$run/log.jsonl" ] && cp "$run/log.jsonl" "$out/"
        for beam in 1 4; do
            [ -f "$out/test.beam$beam.scores.json" ] && continue
            nmt-evaluate -m "$export" --src "$test_src" --ref "$test_ref" --beam "$beam" \
                --threads 1 -o "$runs/eval-$name-beam$beam" --force
            cp "$runs/eval-$name-beam$beam/hyp.txt" "$out/test.beam$beam.de"
            cp "$runs/eval-$name-beam$beam/scores.json" "$out/test.beam$beam.scores.json"
        done
        say "scored 4-4-$name: $(python -c "import json,sys; print(*(json.load(open(f'$out/test.beam{b}.scores.json'))['bleu'] for b in (1, 4)))")"
    done
fi
