"""`nmt-pipeline PIPELINE.yaml`: teacher -> distillation -> students -> export -> benchmark.

One YAML file (`PipelineConfig`, see pipelines/*.yaml) names the teacher's and each
student's run config, the distillation settings, the export and the benchmark grid. Every
output lives under the pipeline's `root`:

    ROOT/TEACHER/             the teacher's run folder (nmt-train), or the run folder made
                              from a trained model's weights (`teacher.model`: nmt.training.adopt)
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
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from nmt.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    check,
    check_name,
    check_number,
    from_dict,
    load_run_config,
    load_yaml,
    replace,
)
from nmt.data.datasets import split_paths
from nmt.distill import DistillConfig
from nmt.fileio import atomic_write_text
from nmt.outputs import FolderLock, claim

log = logging.getLogger(__name__)

STUDENT_DATA = ("distilled", "mix", "original")
RESERVED = ("distilled", "exports", "bench", "stages", "zoo")  # folders under the root
BENCHED_FORMATS = ("ct2", "onnx")  # export formats a student's extra exports can take
STAGES = ("teacher", "distill", "export", "bench", "zoo", "release")  # students: their names


class PipelineError(RuntimeError):
    """A stage's outputs were made with other settings, or a stage cannot run."""


@dataclass(frozen=True)
class RunStage:
    """A model to train: a run config plus ``--set`` overrides; `data` says what a student
    learns from (the teacher always learns from the original corpus). A teacher with a
    `model` (a weights folder, e.g. models/multi30k-tiny/s1) is adopted, not trained
    (`nmt.training.adopt`): its config then names the data, the weights bring their own shape."""

    name: str
    config: str
    set: tuple[str, ...] = ()
    data: str = "distilled"
    model: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        check(self.name not in RESERVED, "name", f"{self.name!r} is reserved for a folder")
        check(self.data in STUDENT_DATA, "data", f"one of {', '.join(STUDENT_DATA)}")


@dataclass(frozen=True)
class FinetuneStage:
    """Fine-tune the teacher or a student (`parent`, by name) with a run config of its own,
    usually on in-domain data (see models/finetune-tatoeba.yaml): the run starts from the
    parent's weights and keeps its tokenizer (train.init_from); ``--set`` overrides apply."""

    name: str
    config: str
    parent: str
    set: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        check(self.name not in RESERVED, "name", f"{self.name!r} is reserved for a folder")


@dataclass(frozen=True)
class ExportStage:
    quantization: str = "int8"  # CTranslate2 weight type of the exports
    vmap: bool = True  # ship a vocabulary map built from each model's training data
    teacher: bool = True  # export (and benchmark) the teacher as well
    student_extras: tuple[str, ...] = ()  # more exports of each student, also benchmarked:
    # "QUANTIZATION" (CTranslate2) or "onnx:QUANTIZATION" -> exports/NAME-float32, NAME-onnx-int8

    def __post_init__(self) -> None:
        from nmt.export import QUANTIZATIONS

        for i, extra in enumerate(self.student_extras):
            fmt, quantization = parse_extra(extra)
            check(
                fmt in BENCHED_FORMATS and quantization in QUANTIZATIONS,
                f"student_extras[{i}]",
                f"{extra!r}: want QUANTIZATION or FORMAT:QUANTIZATION "
                f"(formats {', '.join(BENCHED_FORMATS)}: the ones the benchmark runs)",
            )


def parse_extra(extra: str) -> tuple[str, str]:
    """ "onnx:int8" -> ("onnx", "int8"); "float32" -> ("ct2", "float32")."""
    fmt, _, quantization = extra.rpartition(":")
    return fmt or "ct2", quantization


def extra_export_name(name: str, extra: str) -> str:
    fmt, quantization = parse_extra(extra)
    return f"{name}-{quantization}" if fmt == "ct2" else f"{name}-{fmt}-{quantization}"


@dataclass(frozen=True)
class BenchStage:
    """The benchmark grid over the exports (see benchmarks/multi30k.yaml for each key)."""

    enabled: bool = True
    beam_sizes: tuple[int, ...] = (1, 4)
    batch_sizes: tuple[int, ...] = (32,)
    threads: tuple[int, ...] = (1,)
    compute_types: tuple[str, ...] = ()  # empty: each export's own weight type
    use_vmap: tuple[bool, ...] = ()  # empty: with and without, for exports that ship one
    pytorch: tuple[str, ...] = ()  # models also measured in PyTorch float32 (run folders)
    repeats: int = 3
    warmup_batches: int = 2
    min_pass_seconds: float = 5.0  # each timed pass lasts about this long (0: one round)
    pin_cpus: bool = True  # each cell on CPUs of its own when it needs fewer than all
    latency_sentences: int = 100
    max_lines: int = 0  # first N test lines (0: all)
    time_budget_minutes: float = 0.0

    def __post_init__(self) -> None:
        check_number(self.min_pass_seconds, "bench.min_pass_seconds", ">= 0", " (0: one round)")
        check_number(self.time_budget_minutes, "bench.time_budget_minutes", ">= 0")


@dataclass(frozen=True)
class ReleaseStage:
    """Copy one student's export, with a model card, to `dir` (empty: no release)."""

    dir: str = ""
    model: str = ""  # a student's name; empty: the student with the best greedy BLEU
    max_mb: float = 0.0  # refuse a release larger than this (0: no limit)

    def __post_init__(self) -> None:
        check_number(self.max_mb, "release.max_mb", ">= 0", " (0: no limit)")


@dataclass(frozen=True)
class PipelineConfig:
    root: str
    teacher: RunStage
    students: tuple[RunStage, ...]
    finetune: tuple[FinetuneStage, ...] = ()  # after the students; exported and compared too
    name: str = "pipeline"
    data_dir: str = ""  # dataset files for every run (like --data-dir); empty: the configs'
    teacher_export: str = "int8"  # weight type of the teacher export that distils ("": PyTorch)
    # Distil only from a teacher of at least this dev BLEU (0: no floor; see check_teacher).
    # An untrained or collapsed model scores 0-2, the quickstart's teacher 20-30.
    teacher_min_bleu: float = 10.0
    # Processes per training stage: 1 trains in this process; N > 1 launches
    # `torchrun --standalone --nproc_per_node N -m nmt train` (DDP: gloo on CPU, NCCL on GPUs)
    nproc: int = 1
    share_tokenizer: bool = True  # students reuse the teacher's SentencePiece model
    distill: DistillConfig = field(default_factory=DistillConfig)
    export: ExportStage = field(default_factory=ExportStage)
    bench: BenchStage = field(default_factory=BenchStage)
    zoo: bool = True  # write ROOT/zoo: the table of every model, translations, configs
    release: ReleaseStage = field(default_factory=ReleaseStage)

    def __post_init__(self) -> None:
        check(len(self.students) > 0, "students", "list at least one student")
        check_number(self.teacher_min_bleu, "teacher_min_bleu", "[0, 100]")
        check(self.nproc >= 1, "nproc", "must be >= 1")
        check(
            not self.zoo or self.export.teacher,
            "zoo",
            "needs export.teacher: true (the zoo compares every model with the teacher)",
        )
        check(not self.release.dir or self.zoo, "release.dir", "needs zoo: true")
        models = [self.teacher.name, *(s.name for s in self.students)]
        for name in self.bench.pytorch:
            check(name in models, "bench.pytorch", f"{name!r} is not a model of this pipeline")
        check(
            self.release.model in ("", *(s.name for s in self.students)),
            "release.model",
            f"{self.release.model!r} is not a student of this pipeline",
        )
        names = [self.teacher.name] + [s.name for s in self.students]
        for i, name in enumerate(names[1:]):
            check(names.index(name) == i + 1, f"students[{i}].name", f"{name!r} is used twice")
        for i, f in enumerate(self.finetune):
            check(
                f.name not in names and f.name not in STAGES,
                f"finetune[{i}].name",
                f"{f.name!r} names another model or a stage",
            )
            check(
                f.parent in names,
                f"finetune[{i}].parent",
                f"{f.parent!r} is not the teacher or a student (or an earlier fine-tuned model)",
            )
            names.append(f.name)
        for i, s in enumerate(self.students):
            check(s.name not in STAGES, f"students[{i}].name", f"{s.name!r} names a stage")
            check(not s.model, f"students[{i}].model", "only the teacher can be adopted")
            check(
                s.data != "mix" or self.distill.mix,
                f"students[{i}].data",
                "mix needs distill.mix: true",
            )


def load_pipeline_config(path: str | Path, overrides: list[str] = ()) -> PipelineConfig:
    """Load a pipeline from YAML plus ``key=value`` overrides; also loads every run config
    it names, so that a typo there fails now rather than hours later."""
    from nmt.weights import is_weights

    raw = apply_overrides(load_yaml(path), list(overrides))
    try:
        config = from_dict(PipelineConfig, raw, "")
        model = config.teacher.model
        check(
            not model or is_weights(model),
            "teacher.model",
            f"{model}: not a weights folder (no model.safetensors there)",
        )
        for stage in (config.teacher, *config.students, *config.finetune):
            load_run_config(stage.config, list(stage.set))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return config


# --- run configs of the stages ---------------------------------------------------------------


def teacher_run_config(c: PipelineConfig) -> RunConfig:
    run = load_run_config(c.teacher.config, list(c.teacher.set))
    data = replace(run.data, data_dir=c.data_dir) if c.data_dir else run.data
    return replace(run, run_dir=str(Path(c.root) / c.teacher.name), data=data)


def student_run_config(c: PipelineConfig, student: RunStage) -> RunConfig:
    """The student's run config, reading the distilled (or original) corpus."""
    run = load_run_config(student.config, list(student.set))
    corpus = teacher_run_config(c).data
    where = {
        k: getattr(corpus, k)
        for k in ("dataset", "data_dir", "src_lang", "tgt_lang", "train", "valid", "test")
    }
    if student.data != "original":  # the distilled folder, read by file prefix
        where.update(
            dataset="",
            data_dir=str(Path(c.root) / "distilled"),
            train="train" if student.data == "distilled" else "mix",
        )
    run = replace(run, run_dir=str(Path(c.root) / student.name), data=replace(run.data, **where))
    if c.share_tokenizer:
        spm = str(Path(c.root) / c.teacher.name / "spm.model")
        run = replace(run, tokenizer=replace(run.tokenizer, model=spm))
    return run


def finetune_run_config(c: PipelineConfig, stage: FinetuneStage) -> RunConfig:
    """The fine-tuning run: its own config and data, started from the parent's run folder
    with the parent's tokenizer."""
    run = load_run_config(stage.config, list(stage.set))
    data = replace(run.data, data_dir=c.data_dir) if c.data_dir else run.data
    return replace(
        run,
        run_dir=str(Path(c.root) / stage.name),
        data=data,
        tokenizer=replace(run.tokenizer, model=""),
        train=replace(run.train, init_from=str(Path(c.root) / stage.parent)),
    )


# --- stages ----------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    spec: dict[str, Any]  # the settings its outputs depend on (checked against its marker)
    run: Callable[[], dict[str, Any]]
    # The spec of default settings: a setting a later version added (absent from an older
    # marker) changes nothing while it keeps its default.
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineResult:
    root: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"{len(self.ran)} stages run, {len(self.skipped)} already done"
        if self.incomplete:
            text += f"; incomplete (run again): {', '.join(self.incomplete)}"
        return text + f"; outputs in {self.root}"


def plan(c: PipelineConfig) -> list[Stage]:
    """The stages of the pipeline, in order."""
    root = Path(c.root)
    teacher = teacher_run_config(c)
    students = {s.name: student_run_config(c, s) for s in c.students}
    run_defaults = _json(RunConfig().to_dict())
    teacher_spec = _json(teacher.to_dict())
    make_teacher = functools.partial(train_stage, teacher, c.nproc)
    if c.teacher.model:  # adopted, not trained
        teacher_spec = {"adopted": _weights_id(c.teacher.model), **teacher_spec}
        make_teacher = functools.partial(adopt_stage, c.teacher.model, teacher)
    stages = [
        Stage("teacher", teacher_spec, make_teacher, run_defaults),
        Stage(
            "distill",
            _json(
                {
                    "teacher_export": c.teacher_export,
                    "data": asdict(teacher.data),
                    **asdict(c.distill),
                }
            ),
            lambda: distill_stage(c, teacher),
            _json(asdict(DistillConfig())),
        ),
    ]
    finetuned = {f.name: finetune_run_config(c, f) for f in c.finetune}
    for name, run in (students | finetuned).items():
        train = functools.partial(train_stage, run, c.nproc)
        stages.append(Stage(name, _json(run.to_dict()), train, run_defaults))
    models = ({c.teacher.name: teacher} if c.export.teacher else {}) | students | finetuned
    export_spec = _json({**asdict(c.export), "models": list(models)})
    export = functools.partial(export_stage, root, models, c.export, tuple(students))
    stages.append(Stage("export", export_spec, export))
    if c.bench.enabled:
        bench_spec = _json({**asdict(c.bench), "models": list(models)})
        stages.append(Stage("bench", bench_spec, lambda: bench_stage(c, teacher, models)))
    if c.zoo:
        zoo_spec = _json({"models": list(models), "bench": c.bench.enabled})
        stages.append(Stage("zoo", zoo_spec, lambda: zoo_stage(c, teacher, models)))
    if c.release.dir:
        stages.append(Stage("release", _json(asdict(c.release)), lambda: release_stage(c)))
    return stages


def run_pipeline(
    config: PipelineConfig, until: str | None = None, estimate: bool = True
) -> PipelineResult:
    """Run the stages not done yet, in order (up to and including `until`); first log their
    estimated duration (`nmt.estimate`) unless `estimate` is false."""
    stages = plan(config)
    names = [s.name for s in stages]
    if until is not None and until not in names:
        raise ConfigError(f"--until: unknown stage {until!r} (stages: {', '.join(names)})")
    root = Path(config.root)
    inputs = [config.teacher.model]  # an adopted teacher; each stage claims its own inputs
    claim(root, "nmt-pipeline", inputs=inputs, resumable=True).make()
    with FolderLock(root, "nmt-pipeline"):  # one pipeline at a time in a root
        if estimate:
            _log_estimate(config)
        return _run_stages(config, stages, root, until)


def _log_estimate(config: PipelineConfig) -> None:
    """Log how long the stages not done yet will take here (`nmt.estimate`)."""
    from nmt.estimate import estimate_pipeline, report

    start = time.perf_counter()
    estimates = estimate_pipeline(config)
    if estimates:
        took = time.perf_counter() - start
        log.info("%s\n  (speed probe: %.0f s)", report(estimates), took)


def _run_stages(
    config: PipelineConfig, stages: list[Stage], root: Path, until: str | None
) -> PipelineResult:
    atomic_write_text(root / "pipeline.json", json.dumps(_json(asdict(config)), indent=2) + "\n")
    result = PipelineResult(root)
    for stage in stages:
        marker = root / "stages" / f"{stage.name}.json"
        if marker.is_file():
            done = json.loads(marker.read_text(encoding="utf-8"))
            if changed := _changes(done["spec"], stage.spec, stage.defaults):
                raise PipelineError(_stale(marker, changed))
            log.info("stage %s: done (%s)", stage.name, marker)
            result.skipped.append(stage.name)
            result.results[stage.name] = done["result"]
        else:
            log.info("stage %s: running", stage.name)
            start = time.perf_counter()
            outcome = stage.run()
            result.results[stage.name] = outcome
            if outcome.get("incomplete"):
                result.incomplete.append(stage.name)
                log.warning("stage %s: incomplete; run the pipeline again", stage.name)
            else:
                record = {
                    "stage": stage.name,
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "seconds": round(time.perf_counter() - start, 1),
                    "spec": stage.spec,
                    "result": outcome,
                }
                atomic_write_text(marker, json.dumps(record, indent=2) + "\n")
            result.ran.append(stage.name)
        if stage.name == until:
            break
    return result


def stage_status(config: PipelineConfig) -> list[tuple[str, bool]]:
    """Each stage and whether its marker exists (for `nmt-pipeline --list`)."""
    root = Path(config.root)
    return [(s.name, (root / "stages" / f"{s.name}.json").is_file()) for s in plan(config)]


def train_stage(run: RunConfig, nproc: int = 1) -> dict[str, Any]:
    """Train, or resume a run that has a `last.pt` but no `summary.json`; with `nproc` > 1
    in that many processes under torchrun (`_launch`)."""
    from nmt.training.run import train

    run_dir = Path(run.run_dir)
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():  # finished, but the marker was not written
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    else:
        resume = (run_dir / "last.pt").is_file()
        if resume:
            log.info("%s: resuming from last.pt", run_dir)
        if nproc > 1:
            summary = _launch(run, nproc, resume)
        else:
            with _own_log_handlers():
                summary = train(run, resume=resume)
    return {k: v for k, v in summary.items() if k != "validations"}


def adopt_stage(model: str, run: RunConfig) -> dict[str, Any]:
    """The teacher's run folder made from a trained model's weights (`nmt.training.adopt`)."""
    from nmt.training.adopt import adopt

    summary = adopt(model, run)
    return {k: v for k, v in summary.items() if k != "validations"}


def _weights_id(model: str) -> dict[str, str]:
    """A weights folder as a stage spec: its path and the sha256 of its weights."""
    from nmt.fileio import file_sha256
    from nmt.weights import WEIGHTS_FILE

    path = Path(model)
    return {"path": model, "sha256": file_sha256(path / WEIGHTS_FILE if path.is_dir() else path)}


def _launch(run: RunConfig, nproc: int, resume: bool) -> dict[str, Any]:
    """`torchrun --standalone --nproc_per_node N -m nmt train` on `run` (written to
    RUN_DIR.launch.yaml beside the run folder, so the command can be repeated by hand); its
    output goes to RUN_DIR.launch.log. A failure is a PipelineError naming the log."""
    import subprocess
    import sys

    run_dir = Path(run.run_dir)
    config = run_dir.parent / f"{run_dir.name}.launch.yaml"
    output = run_dir.parent / f"{run_dir.name}.launch.log"
    atomic_write_text(config, yaml.safe_dump(run.to_dict(), sort_keys=False))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={nproc}", "-m", "nmt", "train", "--config", str(config)]
    command += ["--resume"] if resume else []
    log.info("%s: training in %d processes: %s", run_dir, nproc, " ".join(command))
    with open(output, "a", encoding="utf-8") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise PipelineError(
            f"{run_dir}: training in {nproc} processes failed (exit {done.returncode}); "
            f"see {output}; run the pipeline again to resume"
        )
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def distill_stage(c: PipelineConfig, teacher: RunConfig) -> dict[str, Any]:
    from nmt.checkpoint import find_checkpoint
    from nmt.distill import distill

    model = Path(teacher.run_dir)
    check_teacher(c, find_checkpoint(model))
    if c.teacher_export:
        out = Path(c.root) / "exports" / f"{c.teacher.name}-distill-{c.teacher_export}"
        model = _export_once(model, out, c.teacher_export, vmap=None)
    result = distill(model, teacher.data, Path(c.root) / "distilled", c.distill)
    return {k: v for k, v in result.stats.items() if k not in ("examples", "hardware")}


def check_teacher(c: PipelineConfig, checkpoint: Path) -> None:
    """Stop before distilling when the teacher's dev BLEU (its run's summary.json, for the
    checkpoint that would distil) is below `teacher_min_bleu`: its students would learn its
    mistakes (the quickstart on a slow CPU: a teacher at 0.56 gave one sentence for all and
    students at 1.7). A dev BLEU the run did not measure (train.valid_bleu: false) is not
    judged."""
    from nmt.distill import checkpoint_dev_bleu

    if not c.teacher_min_bleu:
        return
    bleu = checkpoint_dev_bleu(checkpoint)
    if bleu is None:
        log.warning(
            "%s: the teacher's dev BLEU is unknown (train.valid_bleu: false?); "
            "teacher_min_bleu %g not applied",
            checkpoint,
            c.teacher_min_bleu,
        )
    elif bleu < c.teacher_min_bleu:
        marker = Path(c.root) / "stages" / "teacher.json"
        raise PipelineError(
            f"the teacher's dev BLEU {bleu:.2f} ({checkpoint}) is below teacher_min_bleu "
            f"{c.teacher_min_bleu:g}: distilling it would teach the students its mistakes. "
            "Train it longer (more updates: raise train.max_steps or train.max_minutes in "
            f"teacher.set, delete {marker} and {checkpoint.parent / 'summary.json'}, and run "
            "again: it resumes from last.pt), or set teacher_min_bleu: 0 to distil anyway"
        )
    else:
        log.info("teacher: dev BLEU %.2f (teacher_min_bleu %g)", bleu, c.teacher_min_bleu)


def export_stage(
    root: Path, models: dict[str, RunConfig], e: ExportStage, students: tuple[str, ...]
) -> dict[str, Any]:
    """Export each model; a vocabulary map from its training corpus when nmt.vmap exists."""
    builder = _vmap_builder() if e.vmap else None
    if e.vmap and builder is None:
        log.warning("nmt.vmap is not available: exporting without vocabulary maps")
    exports = {}
    for name, run in models.items():
        out = root / "exports" / f"{name}-{e.quantization}"
        vmap = None
        if builder is not None and not out.exists():
            vmap = root / "exports" / f"{name}.vmap.txt"
            builder(run, vmap)
        exports[name] = str(_export_once(Path(run.run_dir), out, e.quantization, vmap))
        if name in students:
            for extra in e.student_extras:
                fmt, quantization = parse_extra(extra)
                out = root / "exports" / extra_export_name(name, extra)
                exports[out.name] = str(
                    _export_once(Path(run.run_dir), out, quantization, None, fmt)
                )
    return {"exports": exports}


def _export_once(
    run_dir: Path, out: Path, quantization: str, vmap: Path | None, fmt: str = "ct2"
) -> Path:
    from nmt.export import export
    from nmt.export.folder import is_ct2_export, is_onnx_export

    if (is_ct2_export if fmt == "ct2" else is_onnx_export)(out):  # atomic: complete
        log.info("%s: already exported", out)
        return out
    return export(run_dir, out, format=fmt, quantization=quantization, vmap=vmap)


def _vmap_builder() -> Callable[[RunConfig, Path], None] | None:
    """Build-and-write function over a run's training corpus, or None without nmt.vmap."""
    try:
        from nmt import vmap
    except ImportError:
        return None
    if not all(hasattr(vmap, n) for n in ("build_vmap_from_files", "write_vmap")):
        return None

    def build(run: RunConfig, path: Path) -> None:
        from nmt.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_file(Path(run.run_dir) / "spm.model")
        src, tgt = split_paths(run.data, run.data.train)
        vmap.write_vmap(vmap.build_vmap_from_files(src, tgt, tokenizer), path, force=True)

    return build


def bench_stage(c: PipelineConfig, teacher: RunConfig, models: dict[str, RunConfig]) -> dict:
    from nmt.bench.grid import bench_config
    from nmt.bench.runner import bench

    root, b = Path(c.root), c.bench
    entries = []
    for name, run in models.items():
        export_dir = root / "exports" / f"{name}-{c.export.quantization}"
        entry: dict[str, Any] = {
            "name": export_dir.name,
            "path": str(export_dir),
            "compute_types": list(b.compute_types) or [c.export.quantization],
        }
        if b.use_vmap and (export_dir / "vmap.txt").is_file():
            entry["use_vmap"] = list(b.use_vmap)
        entries.append(entry)
        if name != c.teacher.name:
            for extra in c.export.student_extras:
                fmt, quantization = parse_extra(extra)
                path = root / "exports" / extra_export_name(name, extra)
                extra_entry: dict[str, Any] = {"name": path.name, "path": str(path)}
                if fmt == "ct2":
                    extra_entry["compute_types"] = [quantization]
                entries.append(extra_entry)
        if name in b.pytorch:
            entries.append({"name": f"{name}-pt", "path": run.run_dir})
    d = teacher.data
    test_set: dict[str, Any] = {"name": d.test, "max_lines": b.max_lines}
    if d.dataset:
        test_set.update(dataset=d.dataset, split=d.test, src_lang=d.src_lang, tgt_lang=d.tgt_lang)
    else:
        prefix = Path(d.data_dir) / d.test
        test_set.update(src=f"{prefix}.{d.src_lang}", ref=f"{prefix}.{d.tgt_lang}")
    grid = {
        "name": c.name,
        "output_dir": str(root / "bench"),
        "data_dir": d.data_dir,
        "models": entries,
        "test_sets": [test_set],
        "grid": {
            "devices": ["cpu"],
            "beam_sizes": list(b.beam_sizes),
            "batch_sizes": list(b.batch_sizes),
            "threads": list(b.threads),
        },
        "repeats": b.repeats,
        "warmup_batches": b.warmup_batches,
        "min_pass_seconds": b.min_pass_seconds,
        "pin_cpus": b.pin_cpus,
        "latency_sentences": b.latency_sentences,
        "time_budget_minutes": b.time_budget_minutes,
    }
    grid_path = claim(root / "bench", "nmt-bench", resumable=True).make() / "grid.yaml"
    header = f"# written by nmt-pipeline ({c.name}); rerun: nmt-bench --config {grid_path}\n"
    atomic_write_text(grid_path, header + yaml.safe_dump(grid, sort_keys=False))
    result = bench(bench_config(grid))  # grid.yaml is its record, for reruns
    return {
        "report": str(result.report),
        "measured": len(result.measured),
        "already_measured": len(result.skipped),
        "failed": result.failed,
        "incomplete": bool(result.failed or result.not_started),
    }


def zoo_stage(c: PipelineConfig, teacher: RunConfig, models: dict[str, RunConfig]) -> dict:
    from nmt.zoo import ZooModel, write_zoo

    root = Path(c.root)
    data = {s.name: s.data for s in c.students} | {c.teacher.name: "original"}
    data |= {f.name: f"fine-tuned {f.parent}" for f in c.finetune}
    zoo_models = [
        ZooModel(
            name=name,
            run_dir=Path(run.run_dir),
            export_dir=root / "exports" / f"{name}-{c.export.quantization}",
            data=data[name],
            bench_name=f"{name}-{c.export.quantization}",
            pytorch_bench_name=f"{name}-pt" if name in c.bench.pytorch else "",
        )
        for name, run in models.items()
    ]
    src, ref = split_paths(teacher.data, teacher.data.test)
    bench_results = root / "bench" / "results.jsonl" if c.bench.enabled else None
    zoo = write_zoo(zoo_models, src, ref, root / "zoo", bench_results, teacher.data.tgt_lang)
    return {
        "table": str(root / "zoo" / "zoo.md"),
        "bleu": {m["name"]: [m["beam1"]["bleu"], m["beam4"]["bleu"]] for m in zoo["models"]},
    }


def release_stage(c: PipelineConfig) -> dict:
    from nmt.zoo import distillation_notes, write_release

    zoo = json.loads((Path(c.root) / "zoo" / "zoo.json").read_text(encoding="utf-8"))
    students = [m for m in zoo["models"] if m["name"] in {s.name for s in c.students}]
    name = c.release.model or max(students, key=lambda m: m["beam1"]["bleu"])["name"]
    size = next(m["export_mb"] for m in students if m["name"] == name)
    if c.release.max_mb and size > c.release.max_mb:
        raise PipelineError(
            f"release: {name}'s export is {size:.1f} MB, above release.max_mb {c.release.max_mb}"
        )
    data = next(s.data for s in c.students if s.name == name)
    stats = Path(c.root) / "distilled" / "stats.json"
    notes = ""
    if data != "original" and stats.is_file():
        distilled = json.loads(stats.read_text(encoding="utf-8"))
        notes = distillation_notes(distilled, c.teacher.name, data)
    card = write_release(zoo, name, Path(c.release.dir), notes)
    return {"model": name, "dir": c.release.dir, "card": str(card), "export_mb": size}


# --- helpers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _own_log_handlers() -> Iterator[None]:
    """Remove the handlers a training run adds to the `nmt` logger (its train.log), so
    that the next stage's lines do not land in this run's log."""
    logger = logging.getLogger("nmt")
    before = list(logger.handlers)
    try:
        yield
    finally:
        for handler in [h for h in logger.handlers if h not in before]:
            logger.removeHandler(handler)
            handler.close()


def _json(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), for comparing specs."""
    return json.loads(json.dumps(value))


def _changes(done: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """The settings that differ from a stage's marker; one the marker lacks (added by a
    later version) counts only when it is set away from its default."""
    return sorted(
        key
        for key in _diff(done, now)
        if not (_at(done, key) is _ABSENT and _at(now, key) == _at(defaults, key))
    )


_ABSENT = object()


def _at(spec: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(spec, dict) or part not in spec:
            return _ABSENT
        spec = spec[part]
    return spec


def _stale(marker: Path, changed: list[str]) -> str:
    return (
        f"{marker}: this stage was run with other settings (changed: {', '.join(changed)}); "
        "delete its outputs and this marker to run it again, or choose another root"
    )


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return [d for k in keys for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]
