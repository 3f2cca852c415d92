"""Running a pipeline: its plan (the stages in order, each with the settings its outputs
depend on), their completion markers, and the check that a finished stage was run with
the settings asked for now.

A stage whose marker exists is skipped; a marker written with other settings is a
`PipelineError` (delete the stage's outputs and its marker, or choose another root). A
setting a later version added, absent from an older marker, changes nothing while it keeps
its default.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nmt.config import ConfigError, RunConfig
from nmt.distill import DistillConfig
from nmt.fileio import atomic_write_text
from nmt.outputs import FolderLock, claim
from nmt.pipeline.config import (
    PipelineConfig,
    finetune_run_config,
    plain,
    student_run_config,
    teacher_load_options,
    teacher_run_config,
)
from nmt.pipeline.estimate import busy_cpus, estimate_pipeline, report
from nmt.pipeline.layout import Layout
from nmt.pipeline.stages import (
    PipelineError,
    adopt_foreign_stage,
    adopt_stage,
    bench_stage,
    distill_stage,
    export_stage,
    foreign_bench_name,
    foreign_id,
    release_stage,
    train_stage,
    weights_id,
    zoo_stage,
)

log = logging.getLogger(__name__)


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
    teacher = teacher_run_config(c)
    students = {s.name: student_run_config(c, s) for s in c.students}
    finetuned = {f.name: finetune_run_config(c, f) for f in c.finetune}
    run_defaults = plain(RunConfig().to_dict())
    stages = [_teacher(c, teacher, run_defaults), _distill(c, teacher)]
    for name, run in (students | finetuned).items():
        train = functools.partial(train_stage, run, c.nproc)
        stages.append(Stage(name, plain(run.to_dict()), train, run_defaults))
    # The models nmt exports (and benchmarks, and tabulates): a foreign teacher is not one
    exported_teacher = c.export.teacher and not c.foreign_teacher
    models = ({c.teacher.name: teacher} if exported_teacher else {}) | students | finetuned
    export_spec = {**plain(c.export), "models": list(models)}
    export = functools.partial(export_stage, c.layout, models, c.export, tuple(students))
    stages.append(Stage("export", export_spec, export))
    foreign = {"foreign_teacher": c.teacher.model} if c.foreign_teacher else {}
    if c.bench.enabled:
        benched = [foreign_bench_name(c.teacher.name)] if foreign and c.benched_teacher else []
        bench_spec = {**plain(c.bench), "models": [*benched, *models]}
        stages.append(Stage("bench", bench_spec, lambda: bench_stage(c, teacher, models)))
    if c.zoo:
        zoo_spec = {"models": list(models), "bench": c.bench.enabled, **foreign}
        stages.append(Stage("zoo", zoo_spec, lambda: zoo_stage(c, teacher, models)))
    if c.release.dir:
        stages.append(Stage("release", plain(c.release), lambda: release_stage(c)))
    return stages


def _teacher(c: PipelineConfig, teacher: RunConfig, defaults: dict[str, Any]) -> Stage:
    """Train the teacher, or adopt its weights (`teacher.model`): the spec names them. A
    foreign teacher is recorded and scored on the dev split: its spec is the model, the
    options it loads with (its threads aside: they change no output) and the data."""
    if c.foreign_teacher:
        options = {k: v for k, v in teacher_load_options(c).items() if k != "threads"}
        spec = {
            "adopted": foreign_id(c.teacher.model),
            "options": plain(options),
            "data": plain(teacher.data),
        }
        return Stage("teacher", spec, functools.partial(adopt_foreign_stage, c, teacher))
    spec = plain(teacher.to_dict())
    if c.teacher.model:
        spec = {"adopted": weights_id(c.teacher.model), **spec}
        adopt = functools.partial(adopt_stage, c.teacher.model, teacher)
        return Stage("teacher", spec, adopt, defaults)
    return Stage("teacher", spec, functools.partial(train_stage, teacher, c.nproc), defaults)


def _distill(c: PipelineConfig, teacher: RunConfig) -> Stage:
    """Distil the teacher's corpus: the spec is its export's type (none for a foreign
    teacher: it distils as it is), the corpus and the distillation settings."""
    export = "" if c.foreign_teacher else c.teacher_export
    spec = {"teacher_export": export, "data": plain(teacher.data), **plain(c.distill)}
    return Stage("distill", spec, lambda: distill_stage(c, teacher), plain(DistillConfig()))


def run_pipeline(
    config: PipelineConfig, until: str | None = None, estimate: bool = True
) -> PipelineResult:
    """Run the stages not done yet, in order (up to and including `until`); first log their
    estimated duration (`nmt.pipeline.estimate`) unless `estimate` is false."""
    stages = plan(config)
    names = [s.name for s in stages]
    if until is not None and until not in names:
        raise ConfigError(f"--until: unknown stage {until!r} (stages: {', '.join(names)})")
    layout = config.layout
    inputs = [config.teacher.model]  # an adopted teacher; each stage claims its own inputs
    claim(layout.root, "nmt-pipeline", inputs=inputs, resumable=True).make()
    with FolderLock(layout.root, "nmt-pipeline"):  # one pipeline at a time in a root
        if estimate:
            _log_estimate(config)
        return _run_stages(config, stages, layout, until)


def _log_estimate(config: PipelineConfig) -> None:
    """Log how long the stages not done yet will take here (`nmt.pipeline.estimate`)."""
    start, load = time.perf_counter(), busy_cpus()
    estimates = estimate_pipeline(config)
    if estimates:
        took = time.perf_counter() - start
        log.info("%s\n  (speed probe: %.0f s)", report(estimates, load), took)


def _run_stages(
    config: PipelineConfig, stages: list[Stage], layout: Layout, until: str | None
) -> PipelineResult:
    atomic_write_text(layout.record, json.dumps(plain(config), indent=2) + "\n")
    result = PipelineResult(layout.root)
    for stage in stages:
        marker = layout.marker(stage.name)
        if marker.is_file():
            done = json.loads(marker.read_text(encoding="utf-8"))
            if changed := _changes(done["spec"], stage.spec, stage.defaults):
                raise PipelineError(_stale(marker, changed))
            log.info("stage %s: done (%s)", stage.name, marker)
            result.skipped.append(stage.name)
            result.results[stage.name] = done["result"]
        else:
            _run_stage(stage, marker, result)
        if stage.name == until:
            break
    return result


def _run_stage(stage: Stage, marker: Path, result: PipelineResult) -> None:
    """Run `stage`; write its marker unless it reports itself incomplete."""
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


def stage_status(config: PipelineConfig) -> list[tuple[str, bool]]:
    """Each stage and whether its marker exists (for `nmt-pipeline --list`)."""
    layout = config.layout
    return [(s.name, layout.marker(s.name).is_file()) for s in plan(config)]


# --- the change check ----------------------------------------------------------------------


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
