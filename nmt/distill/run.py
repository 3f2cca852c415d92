"""The whole job: `distill` claims and locks the output folder, then translates, filters
and writes (`DistillResult` says what it did); a shard run (`--shard K/N`) only translates."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nmt.config import DataConfig
from nmt.data.corpus import read_parallel
from nmt.data.datasets import split_paths
from nmt.distill.chunks import raw_translation, translate_corpus, translation_job
from nmt.distill.config import DistillConfig
from nmt.distill.filters import degenerate_corpus, filter_pairs, select_hypotheses, top_output
from nmt.distill.folder import (
    DISTILL,
    PARTS,
    PROVENANCE,
    RAW_INFO,
    SHARDS,
    STATS,
    DistillError,
    shard_folder,
)
from nmt.distill.provenance import (
    copy_splits,
    hardware,
    provenance_record,
    teacher_dev_bleu,
    teacher_info,
)
from nmt.fileio import atomic_write_text
from nmt.outputs import FolderLock, claim, made_by, remove, write_marker

log = logging.getLogger(__name__)

KEEP_WARNING = 0.9  # warn when the filters keep less than this share of the pairs


@dataclass
class DistillResult:
    """What a `distill` call did: its output folder and statistics (stats.json's content,
    or a shard run's counts of chunks and lines)."""

    output_dir: Path
    stats: dict[str, Any]

    def summary(self) -> str:
        s = self.stats
        if "shard" in s:
            return (
                f"shard {s['shard']}: {s['chunks']} chunks ({s['lines']} lines) translated "
                f"({s['chunks_resumed']} before this call); merge when every shard is done: "
                f"the same command with --merge instead of --shard; {self.output_dir}"
            )
        removed = ", ".join(f"{v} {k}" for k, v in s["filtered"].items())
        top = s["top_output"]
        kept = f"{s['kept']} of {s['lines']} pairs kept"
        if nbest := s.get("nbest"):
            kept = (
                f"{s['kept']} pairs ({nbest['select']}) from {s['lines']} lines x "
                f"{nbest['n']} best, {nbest['lines_with_a_pair']} lines with a pair"
            )
        return (
            f"{kept} (removed: {removed}); most frequent "
            f"output: {top['lines']} of {s['kept']} kept lines ({top['share']:.1%}) "
            f"{top['line']!r}; {s['target_pieces_per_s']:,.0f} target tokens/s; {self.output_dir}"
        )


def distill(
    teacher: str | Path | list[str | Path],
    data: DataConfig,
    output_dir: str | Path,
    config: DistillConfig | None = None,
    force: bool = False,
    merge: bool = False,
) -> DistillResult:
    """Translate the training source of `data` with `teacher`, filter, and write the
    distilled dataset folder `output_dir` (see `nmt.distill`). Resumes an
    interrupted run of the same job; another job's folder needs `force`, which never
    touches a folder that holds no distillation or that is, holds or lies inside an input.
    One process at a time writes a folder (a second one fails at once). Several teachers
    (PyTorch models of one tokenizer) translate as one ensemble.

    Across machines: `config.shard` "K/N" translates only the chunks K, K+N, ... into
    `output_dir/shards/K-of-N/` (each shard its own writer; a shared folder, or the shard
    folders copied into one), and a run without a shard takes their chunks first: with
    `merge` it translates nothing and names a shard that is missing or corrupt. The result
    is line for line the output of one run on one machine."""
    config = config or DistillConfig()
    if merge and config.shard:
        raise DistillError("--merge collects every shard's chunks: give no --shard with it")
    out = Path(output_dir)
    src_path, tgt_path = split_paths(data, data.train)
    teachers = [Path(t) for t in teacher] if isinstance(teacher, list | tuple) else [Path(teacher)]
    teacher = [str(t) for t in teachers] if len(teachers) > 1 else str(teachers[0])
    inputs = [*teachers, src_path, tgt_path]
    _adopt_gathered_shards(out)
    claim(out, DISTILL, inputs=inputs, force=force, resumable=True).make()
    writer = out
    if config.shard:  # the shard folder is marked too, so that shards gathered can merge
        writer = claim(shard_folder(out, *config.shard_of), DISTILL, resumable=True).make()
    with FolderLock(writer, "nmt-distill"):
        return _distill(teacher, data, out, config, force, merge)


def _adopt_gathered_shards(out: Path) -> None:
    """A folder holding nothing but `shards/`, each one a shard folder nmt-distill made
    (its marker), copied or linked there from other machines, is a distillation to merge:
    mark it as one."""
    if not out.is_dir() or out.is_symlink() or made_by(out, folder=True):
        return
    shards = out / SHARDS
    entries = [p.name for p in out.iterdir() if p.name != FolderLock.NAME]
    if entries != [SHARDS] or shards.is_symlink() or not shards.is_dir():
        return
    folders = list(shards.iterdir())
    if folders and all(made_by(f.resolve(), folder=True) == DISTILL for f in folders):
        write_marker(out, DISTILL)


def _distill(
    teacher: str | list[str],
    data: DataConfig,
    out: Path,
    config: DistillConfig,
    force: bool,
    merge: bool = False,
) -> DistillResult:
    """Translate -> filter -> write, in the claimed and locked folder `out`."""
    wall = time.perf_counter()
    src_path, tgt_path = split_paths(data, data.train)
    sources, targets = read_parallel(src_path, tgt_path)
    if config.max_lines:
        sources, targets = sources[: config.max_lines], targets[: config.max_lines]
    teacher_meta = teacher_info(teacher)
    job = translation_job(teacher_meta["sha256"], src_path, len(sources), config)
    if config.shard:
        return _distill_shard(teacher, sources, out, config, job, force)
    hyps, translation = raw_translation(
        teacher, sources, out, data.tgt_lang, config, job, force, merge
    )

    n = config.nbest
    pair_sources = [s for s in sources for _ in range(n)]  # each hypothesis's source
    kept, counts, examples = filter_pairs(pair_sources, hyps, config.filters)
    passed = len(kept)
    if n > 1:
        kept = select_hypotheses(kept, hyps, targets, n, config.select)
    top = top_output(pair_sources, hyps, kept)  # over the whole corpus, however many calls
    stats = _stats(pair_sources, hyps, kept, counts, examples, top, translation, config, wall)
    if n > 1:
        stats["nbest"] = {
            "n": n,
            "select": config.select,
            "hypotheses": len(hyps),
            "passed_filters": passed,
            "pairs": len(kept),
            "lines_with_a_pair": len({i // n for i in kept}),
        }
    atomic_write_text(out / STATS, json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    degenerate = degenerate_corpus(top, len(kept), config.filters, teacher_dev_bleu(teacher_meta))
    if degenerate:  # stats.json shows it; no train files a student could learn from
        raise DistillError(f"{degenerate} (statistics: {out / STATS})")

    written = _write_pairs(data, out, config.mix, (sources, targets), pair_sources, hyps, kept)
    copied = copy_splits(data, out)
    provenance = provenance_record(
        teacher_meta, config, data, src_path, tgt_path, out, [*written, *copied]
    )
    atomic_write_text(out / PROVENANCE, json.dumps(provenance, indent=2) + "\n")
    result = DistillResult(out, stats)
    log.info("distilled: %s", result.summary())
    _warn_if_few_kept(len({i // n for i in kept}), len(sources), out)
    return result


def _distill_shard(
    teacher: str | Path,
    sources: list[str],
    out: Path,
    config: DistillConfig,
    job: dict[str, Any],
    force: bool,
) -> DistillResult:
    """Translate one shard's chunks (see `distill`); the merge filters and writes."""
    if (out / RAW_INFO).is_file():
        raise DistillError(
            f"{out}: the translation is complete (merged); nothing is left for shard "
            f"{config.shard} (--force without --shard starts over)"
        )
    if force:
        remove(shard_folder(out, *config.shard_of) / PARTS)
    done = translate_corpus(teacher, sources, out, config, job)
    return DistillResult(out, done)


def _stats(
    sources: list[str],
    hyps: list[str],
    kept: list[int],
    counts: dict[str, int],
    examples: dict[str, list[dict[str, Any]]],
    top: dict[str, Any],
    translation: dict[str, Any],
    config: DistillConfig,
    wall: float,
) -> dict[str, Any]:
    """The content of stats.json: lines, tokens, time, tokens/s, counts and examples per
    filter, the most frequent output, the settings and the hardware; `wall` is when this
    call started. `sources` holds each hypothesis's source (`config.nbest` per line)."""
    seconds = translation["translate_seconds"]
    target_words = sum(len(h.split()) for h in hyps)
    lines = len(sources) // config.nbest
    return {
        "lines": lines,
        "kept": len(kept),
        "filtered": counts,
        "filters": asdict(config.filters),
        "top_output": top,
        "source_words": sum(len(s.split()) for s in sources),
        "target_words": target_words,
        "target_pieces": translation["target_pieces"],
        "kept_source_words": sum(len(sources[i].split()) for i in kept),
        "kept_target_words": sum(len(hyps[i].split()) for i in kept),
        "translate_seconds": seconds,
        "sentences_per_s": round(lines / max(seconds, 1e-9), 1),
        "target_words_per_s": round(target_words / max(seconds, 1e-9), 1),
        "target_pieces_per_s": round(translation["target_pieces"] / max(seconds, 1e-9), 1),
        "chunks": translation["chunks"],
        "chunks_resumed": translation["chunks_resumed"],
        "wall_seconds_this_call": round(time.perf_counter() - wall, 2),
        "settings": {
            "backend": config.backend,
            "device": config.device,
            "compute_type": config.compute_type,
            "workers": config.workers,
            "threads": config.threads,
            **config.decoding_options(),
            **({"nbest": config.nbest, "select": config.select} if config.nbest > 1 else {}),
        },
        "examples": examples,
        "hardware": hardware(config.device),
    }


def _write_pairs(
    data: DataConfig,
    out: Path,
    mix: bool,
    original: tuple[list[str], list[str]],
    sources: list[str],
    hyps: list[str],
    kept: list[int],
) -> list[str]:
    """Write the kept pairs (`sources[i]`, `hyps[i]`) as train.SRC / train.TGT and, with
    `mix`, the `original` pairs then the kept ones as mix.SRC / mix.TGT; the names of the
    files written."""
    src_lang, tgt_lang = data.src_lang, data.tgt_lang
    written = {
        f"train.{src_lang}": [sources[i] for i in kept],
        f"train.{tgt_lang}": [hyps[i] for i in kept],
    }
    if mix:
        written[f"mix.{src_lang}"] = original[0] + written[f"train.{src_lang}"]
        written[f"mix.{tgt_lang}"] = original[1] + written[f"train.{tgt_lang}"]
    for name, lines in written.items():
        atomic_write_text(out / name, "".join(line + "\n" for line in lines))
    return list(written)


def _warn_if_few_kept(kept: int, lines: int, out: Path) -> None:
    """A warning when the filters dropped more than a `KEEP_WARNING` share of the pairs."""
    if kept < KEEP_WARNING * lines:
        log.warning(
            "the filters dropped %.0f%% of the teacher's outputs (examples in %s): is the "
            "teacher trained enough, and are the thresholds right for this corpus?",
            100 * (1 - kept / lines),
            out / STATS,
        )
