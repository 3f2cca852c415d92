"""How long a pipeline will take on this machine, from a short speed probe.

Printed by `nmt-pipeline` before its first stage (and alone with `--estimate`): budgets are
in updates, so the time a run takes depends on the CPU, and a user on a slow one should know
before waiting. What is probed, for the stages not done yet:

- training (teacher, students, fine-tuning): a few optimizer updates of the run's model
  (its shape, its batch of `train.batch_tokens` padded tokens, its threads, device and
  autocast precision) on random
  token ids of a typical caption's length, timed after a warm-up update; times
  `train.max_steps` x `accum_steps` (capped by `train.max_minutes`). Validations are not
  probed (a model that is not trained decodes to its length limit): they add to it.
- distillation: the teacher, exported as distillation will use it (into a temporary folder;
  a foreign teacher as it is, with the distill section's options), translating the first
  training sources with the distillation's beam and threads; times the corpus' lines over
  the workers. Not known before a teacher that must first be trained.
- the benchmark: its cells times their timed passes (`repeats` + 1 passes of
  `min_pass_seconds`, plus loading): a rule of thumb from its settings, not a probe.

Exports, the adopted (or foreign) teacher's dev scoring and the zoo take seconds to a minute
and are not estimated.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nmt.config import RunConfig
from nmt.pipeline.config import (
    PipelineConfig,
    finetune_run_config,
    student_run_config,
    teacher_load_options,
    teacher_run_config,
)
from nmt.training.probe import probe_updates  # the trainer's own update, timed

log = logging.getLogger(__name__)

BUSY_LOAD = 0.5  # a load average above this before probing: other work shares the CPUs
PROBE_LINES = 100  # training sources the distillation probe translates
CELL_OVERHEAD_S = 5.0  # a benchmark cell's process start, model load and latency pass


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    seconds: float | None  # None: not known yet
    how: str  # what the figure comes from

    def __str__(self) -> str:
        took = "unknown yet" if self.seconds is None else f"~{_minutes(self.seconds)}"
        return f"{self.stage}: {took} ({self.how})"


def estimate_pipeline(c: PipelineConfig) -> list[StageEstimate]:
    """An estimate for each stage of `c` that has no completion marker yet."""
    layout = c.layout

    def done(stage: str) -> bool:
        return layout.marker(stage).is_file()

    teacher = teacher_run_config(c)
    estimates = []
    if not done("teacher") and not c.teacher.model:
        estimates.append(training(c.teacher.name, teacher, c.nproc))
    if not done("distill"):
        source = c.teacher.model or (teacher.run_dir if done("teacher") else "")
        estimates.append(distillation(c, teacher, source))
    runs = [(s.name, student_run_config(c, s)) for s in c.students]
    runs += [(f.name, finetune_run_config(c, f)) for f in c.finetune]
    estimates += [training(name, run, c.nproc) for name, run in runs if not done(name)]
    if c.bench.enabled and not done("bench"):
        estimates.append(benchmark(c))
    return estimates


def report(estimates: list[StageEstimate], load: float | None = None) -> str:
    """The estimate as lines to print: each stage, then the total of those known; with the
    1-minute load average measured before the probes (`busy_cpus`), a warning that other work
    shared the CPUs and the estimate is pessimistic."""
    if not estimates:
        return "estimated duration: nothing left to estimate (the probed stages are done)"
    known = [e.seconds for e in estimates if e.seconds is not None]
    lines = [f"  {e}" for e in estimates]
    total = f"estimated duration: ~{_minutes(sum(known))}"
    if len(known) < len(estimates):
        total += " + the stages not known yet"
    if load is not None and load >= BUSY_LOAD:
        lines.append(
            f"  (probed while other work used the CPUs: load average {load:.1f} on "
            f"{os.cpu_count()} CPUs; the estimate is pessimistic)"
        )
    return "\n".join([total + " (exports and the zoo not counted)", *lines])


def busy_cpus() -> float | None:
    """The 1-minute load average before the probes when it says other work is running
    (>= BUSY_LOAD), else None: a probe on shared CPUs measures a slower machine."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    return load if load >= BUSY_LOAD else None


def training(name: str, run: RunConfig, nproc: int) -> StageEstimate:
    """`max_steps` updates at the probe's seconds per update (in `nproc` processes each
    process makes its own batches at once, so the time per update is one process's)."""
    t = run.train
    seconds_per_update = probe_updates(run) * t.accum_steps
    steps = t.max_steps
    seconds = steps * seconds_per_update if steps else None
    if t.max_minutes and (seconds is None or seconds > t.max_minutes * 60):
        seconds = t.max_minutes * 60.0
    how = f"{steps:,} updates x {seconds_per_update:.2f} s probed"
    if nproc > 1:
        how += f", in {nproc} processes"
    validations = steps // t.valid_every if t.valid_every else 0
    if validations:
        how += f"; plus {validations} validations"
    return StageEstimate(name, seconds, how)


def distillation(c: PipelineConfig, teacher: RunConfig, model: str) -> StageEstimate:
    """The corpus' lines at the probed lines per second of one worker, over the workers."""
    from nmt.data.corpus import read_lines
    from nmt.data.datasets import split_paths
    from nmt.translate import load

    if not model:
        return StageEstimate("distill", None, "after the teacher is trained")
    sources = read_lines(split_paths(teacher.data, teacher.data.train)[0])
    lines = min(len(sources), c.distill.max_lines or len(sources))
    d = c.distill
    with tempfile.TemporaryDirectory(prefix="nmt-probe-") as tmp:
        if c.foreign_teacher:  # distils as it is: no export
            translator = load(model, backend="foreign", **teacher_load_options(c))
        else:
            translator = _distill_translator(model, c.teacher_export, Path(tmp), d.threads)
        probe = sources[:PROBE_LINES]
        translator.translate(probe[:8], d.decoding)  # warm-up
        start = time.perf_counter()
        translator.translate(probe, d.decoding)
        per_line = (time.perf_counter() - start) / len(probe)
    workers = max(1, d.workers)
    how = f"{lines:,} lines x {per_line * 1000:.1f} ms probed / {workers} workers"
    return StageEstimate("distill", lines * per_line / workers, how)


def _distill_translator(model: str, quantization: str, tmp: Path, threads: int):
    from nmt.translate import load

    if quantization:  # distillation translates with a CTranslate2 export of the teacher
        from nmt.export import export

        quiet = logging.getLogger("nmt.export")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # a probe's export is not news
        try:
            model = str(export(model, tmp / "teacher", quantization=quantization))
        finally:
            quiet.setLevel(level)
    return load(model, threads=threads)


def benchmark(c: PipelineConfig) -> StageEstimate:
    b = c.bench
    trained = len(c.students) + len(c.finetune)  # each with its extra exports
    models = trained * (1 + len(c.export.student_extras)) + int(c.benched_teacher)
    models += len(b.pytorch)
    variants = len(b.use_vmap) or (2 if c.export.vmap else 1)
    cells = models * len(b.beam_sizes) * len(b.batch_sizes) * len(b.threads) * variants
    per_cell = (b.repeats + 1) * max(b.min_pass_seconds, 1.0) + CELL_OVERHEAD_S
    how = f"{cells} cells x ~{per_cell:.0f} s, from its settings"
    return StageEstimate("bench", cells * per_cell, how)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
