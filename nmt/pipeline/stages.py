"""The stage functions: each calls the library for one stage of the pipeline and returns
its result (what the stage's marker records).

`train_stage` and `adopt_stage` make a run folder (teacher, student, fine-tuned model),
`adopt_foreign_stage` the record of a teacher nmt did not make, `distill_stage` the
distilled dataset, `export_stage` the exports, `bench_stage` the
benchmark, `zoo_stage` the model table and `release_stage` the release. Each resumes what an
interrupted call left: training from `last.pt`, distillation from its chunk files, export
per model, benchmarking per cell. Paths come from the pipeline's `Layout`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from nmt.bench.grid import BenchConfig, Grid, ModelEntry, TestSet, check_repeats
from nmt.config import DataConfig, RunConfig
from nmt.data.datasets import split_paths
from nmt.fileio import atomic_write_text
from nmt.outputs import claim, open_nofollow
from nmt.pipeline.config import (
    ExportStage,
    PipelineConfig,
    parse_extra,
    plain,
    teacher_load_options,
)
from nmt.pipeline.layout import Layout

log = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    """A stage's outputs were made with other settings, or a stage cannot run."""


def pytorch_bench_name(name: str) -> str:
    """Model `name`'s run folder as the benchmark names it (`bench.pytorch`)."""
    return f"{name}-pt"


def foreign_bench_name(name: str) -> str:
    """A foreign teacher as the benchmark names it (measured as it is, not exported)."""
    return f"{name}-foreign"


# --- training ------------------------------------------------------------------------------


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
        # (in this process, the trainer removes the log handler of its train.log itself)
        summary = _launch(run, nproc, resume) if nproc > 1 else train(run, resume=resume)
    return {k: v for k, v in summary.items() if k != "validations"}


def adopt_stage(model: str, run: RunConfig) -> dict[str, Any]:
    """The teacher's run folder made from a trained model's weights (`nmt.training.adopt`)."""
    from nmt.training.adopt import adopt

    summary = adopt(model, run)
    return {k: v for k, v in summary.items() if k != "validations"}


def adopt_foreign_stage(c: PipelineConfig, run: RunConfig) -> dict[str, Any]:
    """The record of a foreign teacher (`nmt.training.adopt.adopt_foreign`), scored as the
    distill section loads it (device, threads, compute type, tokenizer and prefixes)."""
    from nmt.training.adopt import adopt_foreign

    summary = adopt_foreign(c.teacher.model, run, **teacher_load_options(c))
    result = {k: v for k, v in summary.items() if k != "validations"}
    adopted = summary["adopted"]  # its files are in the record, not repeated in the marker
    result["adopted"] = {k: adopted[k] for k in ("source", "sha256", "options")}
    return result


def foreign_id(model: str) -> dict[str, str]:
    """A foreign model as a stage spec: its path and one sha256 over its files (an
    archive: the file's own)."""
    from nmt.backends.convert import fingerprint
    from nmt.fileio import file_sha256

    path = Path(model)
    if path.is_file():
        return {"path": model, "sha256": file_sha256(path)}
    files = {
        f.relative_to(path).as_posix(): file_sha256(f)
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }
    return {"path": model, "sha256": fingerprint(files)}


def weights_id(model: str) -> dict[str, str]:
    """A weights folder as a stage spec: its path and the sha256 of its weights."""
    from nmt.fileio import file_sha256
    from nmt.weights import WEIGHTS_FILE

    path = Path(model)
    return {"path": model, "sha256": file_sha256(path / WEIGHTS_FILE if path.is_dir() else path)}


def _run_teed(command: list[str], output: Path) -> int:
    """Run `command`, appending its output to `output` and showing its log lines (rank 0's
    progress: step, loss, tokens/s, ETA) on this console as they come; its exit status."""
    import subprocess

    fd = open_nofollow(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        for line in proc.stdout:
            out.write(line)
            if " INFO " in line or " WARNING " in line or "error" in line.lower():
                sys.stderr.write(line)
                sys.stderr.flush()
        return proc.wait()


def _launch(run: RunConfig, nproc: int, resume: bool) -> dict[str, Any]:
    """`torchrun --standalone --nproc_per_node N -m nmt train` on `run` (written to
    RUN_DIR.launch.yaml beside the run folder, so the command can be repeated by hand); its
    output goes to RUN_DIR.launch.log. A failure is a PipelineError naming the log."""
    run_dir = Path(run.run_dir)
    config = run_dir.parent / f"{run_dir.name}.launch.yaml"
    output = run_dir.parent / f"{run_dir.name}.launch.log"
    atomic_write_text(config, yaml.safe_dump(run.to_dict(), sort_keys=False))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={nproc}", "-m", "nmt", "train", "--config", str(config)]
    command += ["--resume"] if resume else []
    log.info("%s: training in %d processes: %s", run_dir, nproc, " ".join(command))
    returncode = _run_teed(command, output)
    if returncode != 0:
        raise PipelineError(
            f"{run_dir}: training in {nproc} processes failed (exit {returncode}); "
            f"see {output}; run the pipeline again to resume"
        )
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


# --- distillation --------------------------------------------------------------------------


def distill_stage(c: PipelineConfig, teacher: RunConfig) -> dict[str, Any]:
    """Distil with the teacher's export (`teacher_export`) or run folder; a foreign teacher
    distils as it is, with the distill section's tokenizer and prefix options."""
    from nmt.checkpoint import find_checkpoint
    from nmt.distill import distill

    layout = c.layout
    if c.foreign_teacher:
        check_foreign_teacher(c)
        model = Path(c.teacher.model)
    else:
        model = Path(teacher.run_dir)
        check_teacher(c, find_checkpoint(model))
        if c.teacher_export:
            model = _export_once(model, layout.distill_export, c.teacher_export, vmap=None)
    result = distill(model, teacher.data, layout.distilled, c.distill)
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
        raise PipelineError(
            f"the teacher's dev BLEU {bleu:.2f} ({checkpoint}) is below teacher_min_bleu "
            f"{c.teacher_min_bleu:g}: distilling it would teach the students its mistakes. "
            "Train it longer (more updates: raise train.max_steps or train.max_minutes in "
            f"teacher.set, delete {c.layout.marker('teacher')} and "
            f"{checkpoint.parent / 'summary.json'}, and run again: it resumes from last.pt), "
            "or set teacher_min_bleu: 0 to distil anyway"
        )
    else:
        log.info("teacher: dev BLEU %.2f (teacher_min_bleu %g)", bleu, c.teacher_min_bleu)


def check_foreign_teacher(c: PipelineConfig) -> None:
    """`check_teacher` for a foreign teacher: the floor applies to the dev BLEU its teacher
    stage measured through it (the record's summary.json)."""
    if not c.teacher_min_bleu:
        return
    record = c.layout.teacher / "summary.json"
    bleu = json.loads(record.read_text(encoding="utf-8"))["best_valid_bleu"]
    if bleu < c.teacher_min_bleu:
        raise PipelineError(
            f"the teacher's dev BLEU {bleu:.2f} ({c.teacher.model}, greedy: {record}) is "
            f"below teacher_min_bleu {c.teacher_min_bleu:g}: distilling it would teach the "
            "students its mistakes. Check its language pair, tokenizer and prefixes "
            "(distill.tokenizer_files, distill.source_prefix, distill.source_suffix, "
            "distill.target_prefix: changing them records it again), or set "
            "teacher_min_bleu: 0 to distil anyway"
        )
    log.info("teacher: dev BLEU %.2f (teacher_min_bleu %g)", bleu, c.teacher_min_bleu)


# --- export --------------------------------------------------------------------------------


def export_stage(
    layout: Layout, models: dict[str, RunConfig], e: ExportStage, students: tuple[str, ...]
) -> dict[str, Any]:
    """Export each model; a vocabulary map from its training corpus when nmt.vmap exists;
    the extra exports (`e.student_extras`) of the `students`."""
    exports = {}
    for name, run in models.items():
        out = layout.export(name)
        vmap = None
        if e.vmap and not out.exists():
            vmap = layout.vmap(name)
            _build_vmap(run, vmap)
        exports[name] = str(_export_once(Path(run.run_dir), out, e.quantization, vmap))
        if name in students:
            for extra in e.student_extras:
                fmt, quantization = parse_extra(extra)
                out = layout.extra_export(name, fmt, quantization)
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


def _build_vmap(run: RunConfig, path: Path) -> None:
    """The vocabulary map of `run`'s training corpus, written to `path`."""
    from nmt.tokenizer import Tokenizer
    from nmt.vmap import build_vmap_from_files, write_vmap

    tokenizer = Tokenizer.from_file(Path(run.run_dir) / "spm.model")
    src, tgt = split_paths(run.data, run.data.train)
    write_vmap(build_vmap_from_files(src, tgt, tokenizer), path, force=True)


# --- benchmark -----------------------------------------------------------------------------


def bench_grid(c: PipelineConfig, data: DataConfig, models: dict[str, RunConfig]) -> BenchConfig:
    """The benchmark of the `models`' exports (and of the run folders in `bench.pytorch`)
    on the test set of `data` (the teacher's corpus), on CPU."""
    b = c.bench
    entries = [entry for name, run in models.items() for entry in _bench_models(c, name, run)]
    if c.foreign_teacher and c.benched_teacher:  # first, where an exported teacher would be
        entries.insert(0, ModelEntry(foreign_bench_name(c.teacher.name), c.teacher.model))
    return BenchConfig(
        models=tuple(entries),
        test_sets=(_test_set(data, b.max_lines),),
        name=c.name,
        output_dir=str(c.layout.bench),
        data_dir=data.data_dir,
        grid=Grid(
            devices=("cpu",),
            beam_sizes=b.beam_sizes,
            batch_sizes=b.batch_sizes,
            threads=b.threads,
        ),
        repeats=b.repeats,
        warmup_batches=b.warmup_batches,
        min_pass_seconds=b.min_pass_seconds,
        pin_cpus=b.pin_cpus,
        latency_sentences=b.latency_sentences,
        time_budget_minutes=b.time_budget_minutes,
    )


def _bench_models(c: PipelineConfig, name: str, run: RunConfig) -> list[ModelEntry]:
    """Model `name`'s export, a student's extra exports, and its run folder (PyTorch) when
    `bench.pytorch` names it."""
    layout, b = c.layout, c.bench
    export = layout.export(name)
    vmap = b.use_vmap if (export / "vmap.txt").is_file() else ()
    compute_types = b.compute_types or (c.export.quantization,)
    entries = [ModelEntry(export.name, str(export), compute_types=compute_types, use_vmap=vmap)]
    if name != c.teacher.name:
        for extra in c.export.student_extras:
            fmt, quantization = parse_extra(extra)
            path = layout.extra_export(name, fmt, quantization)
            types = (quantization,) if fmt == "ct2" else ()
            entries.append(ModelEntry(path.name, str(path), compute_types=types))
    if name in b.pytorch:
        entries.append(ModelEntry(pytorch_bench_name(name), run.run_dir))
    return entries


def _test_set(data: DataConfig, max_lines: int) -> TestSet:
    """The test split of `data`: a registered dataset's, or files by prefix."""
    if data.dataset:
        return TestSet(
            data.test,
            dataset=data.dataset,
            split=data.test,
            src_lang=data.src_lang,
            tgt_lang=data.tgt_lang,
            max_lines=max_lines,
        )
    src, ref = split_paths(data, data.test)
    return TestSet(data.test, src=str(src), ref=str(ref), max_lines=max_lines)


def bench_stage(c: PipelineConfig, teacher: RunConfig, models: dict[str, RunConfig]) -> dict:
    """Benchmark the exports (`bench_grid`); the grid is written to bench/grid.yaml first,
    the record a rerun with `nmt-bench --config` takes."""
    from nmt.bench.runner import bench

    grid = check_repeats(bench_grid(c, teacher.data, models))
    path = c.layout.bench_grid
    claim(path.parent, "nmt-bench", resumable=True).make()
    header = f"# written by nmt-pipeline ({c.name}); rerun: nmt-bench --config {path}\n"
    atomic_write_text(path, header + yaml.safe_dump(plain(grid), sort_keys=False))
    result = bench(grid)
    return {
        "report": str(result.report),
        "measured": len(result.measured),
        "already_measured": len(result.skipped),
        "failed": result.failed,
        "incomplete": bool(result.failed or result.not_started),
    }


# --- zoo and release -----------------------------------------------------------------------


def zoo_stage(c: PipelineConfig, teacher: RunConfig, models: dict[str, RunConfig]) -> dict:
    from nmt.zoo import ZooModel, write_zoo

    layout = c.layout
    data = {s.name: s.data for s in c.students} | {c.teacher.name: "original"}
    data |= {f.name: f"fine-tuned {f.parent}" for f in c.finetune}
    zoo_models = [
        ZooModel(
            name=name,
            run_dir=Path(run.run_dir),
            export_dir=layout.export(name),
            data=data[name],
            bench_name=layout.export(name).name,
            pytorch_bench_name=pytorch_bench_name(name) if name in c.bench.pytorch else "",
        )
        for name, run in models.items()
    ]
    src, ref = split_paths(teacher.data, teacher.data.test)
    bench_results = layout.bench_results if c.bench.enabled else None
    zoo = write_zoo(zoo_models, src, ref, layout.zoo, bench_results, teacher.data)
    rows = zoo["models"]
    if c.foreign_teacher:
        rows = [_zoo_foreign_teacher(c, teacher.data, zoo), *rows]
    return {
        "table": str(layout.zoo_table),
        "bleu": {m["name"]: [m["beam1"]["bleu"], m["beam4"]["bleu"]] for m in rows},
    }


def _zoo_foreign_teacher(c: PipelineConfig, data: DataConfig, zoo: dict) -> dict[str, Any]:
    """The foreign teacher in the zoo: the test set translated through it as the zoo
    translates (one thread, each beam of `nmt.zoo.BEAMS`), scored, and a note below the
    table, which describes nmt's models (shape, parameters, export) and so has no row for
    it; added to zoo.md and to zoo.json (`foreign_teacher`). Returns its entry."""
    from nmt.data.corpus import read_parallel
    from nmt.scoring import score
    from nmt.translate import load
    from nmt.zoo import BEAMS

    layout, name = c.layout, c.teacher.name
    test = zoo["test_set"]
    sources, references = read_parallel(Path(test["src"]), Path(test["ref"]))
    options = teacher_load_options(c) | {"threads": 1}
    translator = load(c.teacher.model, backend="foreign", **options)
    entry: dict[str, Any] = {"name": name, "model": c.teacher.model, "kind": translator.model.kind}
    for beam in BEAMS:
        hyps = translator.translate(sources, beam_size=beam)
        path = layout.zoo / "translations" / f"{name}.beam{beam}.{data.tgt_lang}"
        atomic_write_text(path, "".join(h + "\n" for h in hyps))
        entry[f"beam{beam}"] = {**score(hyps, references).as_dict(), "file": str(path)}
    zoo["foreign_teacher"] = entry
    atomic_write_text(layout.zoo_json, json.dumps(zoo, indent=2) + "\n")

    scores = ", ".join(
        f"beam {beam} BLEU {entry[f'beam{beam}']['bleu']:.2f} / chrF2 "
        f"{entry[f'beam{beam}']['chrf']:.2f}"
        for beam in BEAMS
    )
    if c.bench.enabled and c.benched_teacher:
        speed = f"its speed: `bench/report.md`, model `{foreign_bench_name(name)}`."
    elif c.bench.enabled and c.export.teacher:
        speed = "not benchmarked (a benchmark cell would load it without its options)."
    else:
        speed = "not benchmarked."
    note = (
        f"\nThe teacher `{name}` is not in the table: it is a model nmt did not make "
        f"({entry['kind']}: `{c.teacher.model}`), whose shape and export the table cannot "
        "describe ('x teacher' above is relative to the first row). On the same test set, "
        f"translated by it directly (one thread): {scores}; translations: "
        f"`translations/{name}.beam{{1,4}}.{data.tgt_lang}`; {speed}\n"
    )
    atomic_write_text(layout.zoo_table, layout.zoo_table.read_text(encoding="utf-8") + note)
    return entry


def release_stage(c: PipelineConfig) -> dict:
    from nmt.zoo import distillation_notes, write_release

    layout = c.layout
    zoo = json.loads(layout.zoo_json.read_text(encoding="utf-8"))
    students = [m for m in zoo["models"] if m["name"] in {s.name for s in c.students}]
    name = c.release.model or max(students, key=lambda m: m["beam1"]["bleu"])["name"]
    size = next(m["export_mb"] for m in students if m["name"] == name)
    if c.release.max_mb and size > c.release.max_mb:
        raise PipelineError(
            f"release: {name}'s export is {size:.1f} MB, above release.max_mb {c.release.max_mb}"
        )
    data = next(s.data for s in c.students if s.name == name)
    notes = ""
    if data != "original" and layout.distill_stats.is_file():
        distilled = json.loads(layout.distill_stats.read_text(encoding="utf-8"))
        notes = distillation_notes(distilled, c.teacher.name, data)
    card = write_release(zoo, name, layout.release, notes)
    return {"model": name, "dir": c.release.dir, "card": str(card), "export_mb": size}
