"""The pipeline's config: one frozen dataclass per stage, `PipelineConfig` over them, its
loading (YAML plus ``--set`` overrides), and the run config each training stage gets.

A `PipelineConfig` is validated on construction (`nmt.config.from_dict` names an unknown or
wrong key); `load_pipeline_config` also loads every run config it names, so that a typo
there fails at once rather than hours later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from nmt.distill import DistillConfig
from nmt.pipeline.layout import FOLDERS, Layout

STUDENT_DATA = ("distilled", "mix", "original")
BENCHED_FORMATS = ("ct2", "onnx")  # export formats a student's extra exports can take
STAGES = ("teacher", "distill", "export", "bench", "zoo", "release")  # students: their names


@dataclass(frozen=True)
class RunStage:
    """A model to train: a run config plus ``--set`` overrides; `data` says what a student
    learns from (the teacher always learns from the original corpus). A teacher with a
    `model` is adopted, not trained (`nmt.training.adopt`): a weights folder (e.g.
    models/multi30k-tiny/s1), or a model nmt did not make (`nmt.backends.foreign`: a
    CTranslate2 folder with its tokenizer, an Argos package, a Hugging Face folder) that
    distils as it is. Its config then names the data; the model brings its own shape."""

    name: str
    config: str
    set: tuple[str, ...] = ()
    data: str = "distilled"
    model: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        check(self.name not in FOLDERS, "name", f"{self.name!r} is reserved for a folder")
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
        check(self.name not in FOLDERS, "name", f"{self.name!r} is reserved for a folder")


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
    # Students reuse the teacher's SentencePiece model; unset: yes, unless the teacher is a
    # foreign model (its tokenizer is its own: students then train theirs, as with false)
    share_tokenizer: bool | None = None
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
            not self.zoo or self.export.teacher or self.foreign_teacher,
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
        self._check_finetune()
        self._check_students()

    def _check_students(self) -> None:
        for i, s in enumerate(self.students):
            check(s.name not in STAGES, f"students[{i}].name", f"{s.name!r} names a stage")
            check(not s.model, f"students[{i}].model", "only the teacher can be adopted")
            check(
                s.data != "mix" or self.distill.mix,
                f"students[{i}].data",
                "mix needs distill.mix: true",
            )

    def _check_finetune(self) -> None:
        names = [self.teacher.name] + [s.name for s in self.students]
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

    @property
    def foreign_teacher(self) -> bool:
        """The teacher is a model nmt did not make (`nmt.backends.foreign`): it is recorded,
        not copied (`nmt.training.adopt.adopt_foreign`), distils as it is (`teacher_export`
        does not apply), is never exported (`export.teacher` then only benchmarks it) and
        appears in the zoo below the table (`zoo.md`), which describes nmt's models."""
        from nmt.backends.foreign import is_foreign

        return bool(self.teacher.model) and is_foreign(Path(self.teacher.model))

    @property
    def shares_tokenizer(self) -> bool:
        """Students reuse the teacher's SentencePiece model (`share_tokenizer`, resolved)."""
        if self.share_tokenizer is None:
            return not self.foreign_teacher
        return self.share_tokenizer

    @property
    def benched_teacher(self) -> bool:
        """The benchmark measures the teacher: its export, or a foreign teacher as it is
        when it needs none of the distill section's tokenizer or prefix options (a
        benchmark cell loads a model without options)."""
        if not self.export.teacher:
            return False
        return not (self.foreign_teacher and self.distill.teacher_options())

    @property
    def layout(self) -> Layout:
        """Where each of this pipeline's outputs lives."""
        return Layout(
            root=Path(self.root),
            teacher_name=self.teacher.name,
            quantization=self.export.quantization,
            teacher_export=self.teacher_export,
            release_dir=self.release.dir,
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
            not model or config.foreign_teacher or is_weights(model),
            "teacher.model",
            f"{model}: not a weights folder (no model.safetensors there) nor a model nmt "
            "did not make (a CTranslate2 folder, an Argos package, a Hugging Face folder)",
        )
        if config.foreign_teacher:
            _check_foreign_teacher(config)
        for stage in (config.teacher, *config.students, *config.finetune):
            load_run_config(stage.config, list(stage.set))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return config


def _check_foreign_teacher(c: PipelineConfig) -> None:
    """What a foreign teacher cannot do: lend its tokenizer, be fine-tuned, run in PyTorch,
    or stand in the zoo's first row that a release's model card compares with."""
    name = c.teacher.name
    check(
        not c.share_tokenizer,
        "share_tokenizer",
        "a foreign teacher's tokenizer is its own: students train theirs (leave it out or false)",
    )
    for i, f in enumerate(c.finetune):
        check(f.parent != name, f"finetune[{i}].parent", "nmt fine-tunes only its own models")
    check(name not in c.bench.pytorch, "bench.pytorch", f"{name!r} is a foreign model")
    check(
        not c.release.dir,
        "release.dir",
        "its model card compares the student with the teacher's zoo row, which a foreign "
        "teacher does not have (the student's export is under ROOT/exports)",
    )


def plain(value: Any) -> Any:
    """`value` as it reads back from JSON: dataclasses and mappings as dicts with string
    keys, tuples as lists. Stage specs take this form to be compared with their markers,
    and the records (pipeline.json, bench/grid.yaml) are written from it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def teacher_load_options(c: PipelineConfig) -> dict[str, Any]:
    """The `nmt.translate.load` options of a foreign teacher: as distillation loads it (its
    device, threads, compute type, tokenizer files and prefixes)."""
    d = c.distill
    options = {"device": d.device, "threads": d.threads, "compute_type": d.compute_type}
    return options | d.teacher_options()


# --- run configs of the training stages ----------------------------------------------------


def teacher_run_config(c: PipelineConfig) -> RunConfig:
    run = load_run_config(c.teacher.config, list(c.teacher.set))
    data = replace(run.data, data_dir=c.data_dir) if c.data_dir else run.data
    return replace(run, run_dir=str(c.layout.teacher), data=data)


def student_run_config(c: PipelineConfig, student: RunStage) -> RunConfig:
    """The student's run config, reading the distilled (or original) corpus."""
    layout = c.layout
    run = load_run_config(student.config, list(student.set))
    corpus = teacher_run_config(c).data
    where = {
        k: getattr(corpus, k)
        for k in ("dataset", "data_dir", "src_lang", "tgt_lang", "train", "valid", "test")
    }
    if student.data != "original":  # the distilled folder, read by file prefix
        where.update(
            dataset="",
            data_dir=str(layout.distilled),
            train="train" if student.data == "distilled" else "mix",
        )
    run = replace(run, run_dir=str(layout.run(student.name)), data=replace(run.data, **where))
    if c.shares_tokenizer:
        spm = str(layout.teacher_tokenizer)
        run = replace(run, tokenizer=replace(run.tokenizer, model=spm))
    return run


def finetune_run_config(c: PipelineConfig, stage: FinetuneStage) -> RunConfig:
    """The fine-tuning run: its own config and data, started from the parent's run folder
    with the parent's tokenizer."""
    run = load_run_config(stage.config, list(stage.set))
    data = replace(run.data, data_dir=c.data_dir) if c.data_dir else run.data
    return replace(
        run,
        run_dir=str(c.layout.run(stage.name)),
        data=data,
        tokenizer=replace(run.tokenizer, model=""),
        train=replace(run.train, init_from=str(c.layout.run(stage.parent))),
    )
