"""`nmt-pipeline PIPELINE.yaml`: teacher -> distillation -> students -> export -> benchmark.

One YAML file (`PipelineConfig`, see pipelines/*.yaml) names the teacher's and each
student's run config, the distillation settings, the export and the benchmark grid. Every
output lives under the pipeline's `root` (`Layout` names each path):

    ROOT/TEACHER/             the teacher's run folder (nmt-train), or the run folder made
                              from a trained model's weights (`teacher.model`: nmt.training.adopt),
                              or the record (summary.json) of a model nmt did not make
                              (`teacher.model` a CTranslate2 folder, an Argos package, a
                              Hugging Face folder: it distils as it is, is never exported,
                              and the zoo scores it below its table)
    ROOT/exports/TEACHER-distill-Q/  the teacher exported to CTranslate2 (type Q) to distil
    ROOT/distilled/           the distilled dataset folder (nmt.distill)
    ROOT/STUDENT/             one run folder per student
    ROOT/FINETUNED/           one run folder per fine-tuning stage: the teacher or a student
                              trained further on the stage config's (in-domain) data
    ROOT/exports/NAME-Q/      the int8 (or other) exports, with a vocabulary map when
                              nmt.vmap is available; ROOT/exports/NAME.vmap.txt
    ROOT/bench/               grid.yaml (rerun it with nmt-bench), results.jsonl, report.md
    ROOT/zoo/                 zoo.md: every model's shape, parameters, size, BLEU/chrF and
                              speed; the test-set translations and run configs (nmt.zoo)
    RELEASE.dir               optional: one student's export and its model card (README.md)
    ROOT/stages/STAGE.json    a stage's completion marker (teacher, distill, each student by
                              its name, export, bench): its settings, its result
    ROOT/pipeline.json        the resolved pipeline config

Stages run in order and each calls the library (`nmt.training.run.train`, `nmt.distill.distill`,
`nmt.export.export`, `nmt.bench.runner.bench`, which measures each cell in a fresh
process). A stage whose marker exists is skipped; a marker written with other settings is
an error (delete the stage's outputs and its marker, or choose another root). An
interrupted stage resumes where it stopped: training with `resume` when `last.pt` exists,
distillation from its chunk files, export per model, benchmarking per cell.

Distillation starts only from a teacher whose dev BLEU reaches `teacher_min_bleu`, and
stops with an error when the teacher gives one output for a large share of the corpus
(`distill.filters.max_top_share`): an undertrained teacher is an error, not a zoo.

The modules, in the order they import one another:

    layout.py    `Layout`: every path under the root
    config.py    `PipelineConfig` and its stage dataclasses, loading with overrides, the
                 run config of each training stage
    estimate.py  how long the stages not done yet will take here (a speed probe)
    stages.py    one function per stage, calling the library
    runner.py    the plan, the stage markers and their change check, `run_pipeline`
"""

from nmt.pipeline.config import (
    BenchStage,
    ExportStage,
    FinetuneStage,
    PipelineConfig,
    ReleaseStage,
    RunStage,
    finetune_run_config,
    load_pipeline_config,
    student_run_config,
    teacher_run_config,
)
from nmt.pipeline.estimate import StageEstimate, estimate_pipeline, report
from nmt.pipeline.layout import Layout
from nmt.pipeline.runner import PipelineResult, plan, run_pipeline, stage_status
from nmt.pipeline.stages import PipelineError, train_stage

__all__ = [
    "BenchStage",
    "ExportStage",
    "FinetuneStage",
    "Layout",
    "PipelineConfig",
    "PipelineError",
    "PipelineResult",
    "ReleaseStage",
    "RunStage",
    "StageEstimate",
    "estimate_pipeline",
    "finetune_run_config",
    "load_pipeline_config",
    "plan",
    "report",
    "run_pipeline",
    "stage_status",
    "student_run_config",
    "teacher_run_config",
    "train_stage",
]
