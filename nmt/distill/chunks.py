"""Translation in resumable chunks. The source is cut into fixed chunks of `chunk_lines`
lines; each translated chunk is written atomically as `parts/NNNNNN.json` (`Parts`), and a
restarted run translates only the chunks still missing, so every line is translated once
and the output keeps the corpus order. `parts/job.json` records what is being translated
(`translation_job`); parts of another job are never mixed in. A shard run (`--shard K/N`)
translates chunks K, K+N, ... into `shards/K-of-N/parts/`; a whole run takes their chunks
first, and `--merge` translates nothing. Once every chunk is there, `raw.TGT` and
`raw.json` are written atomically and the parts removed (`raw_translation`)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from nmt.data.corpus import read_lines
from nmt.distill.config import DistillConfig
from nmt.distill.folder import JOB, PARTS, RAW_INFO, SHARDS, DistillError, shard_folder
from nmt.distill.workers import run_tasks
from nmt.fileio import atomic_write_text, file_sha256, remove_stale_temporaries
from nmt.outputs import ensure_folder, remove

log = logging.getLogger(__name__)


class Parts:
    """The chunk files of one translation job in `folder`."""

    def __init__(self, folder: Path, n_lines: int, chunk_lines: int, per_line: int = 1):
        self.folder, self.n_lines, self.chunk_lines = folder, n_lines, chunk_lines
        self.per_line = per_line  # hypotheses per source line (the n of an n-best job)
        self.count = -(-n_lines // chunk_lines)

    def span(self, index: int) -> tuple[int, int]:
        return index * self.chunk_lines, min((index + 1) * self.chunk_lines, self.n_lines)

    def path(self, index: int) -> Path:
        return self.folder / f"{index:06d}.json"

    def read(self, index: int) -> dict[str, Any] | None:
        """The chunk's record, or None when it is missing or not this chunk's."""
        try:
            part = json.loads(self.path(index).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        first, end = self.span(index)
        expected = (end - first) * self.per_line
        if part.get("first_line") != first or len(part.get("hypotheses", ())) != expected:
            log.warning(
                "%s: not chunk %d of this job; translating it again", self.path(index), index
            )
            return None
        return part

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if self.read(i) is None]

    def write(self, index: int, result: dict[str, Any]) -> None:
        first, _ = self.span(index)
        atomic_write_text(self.path(index), json.dumps({"first_line": first, **result}) + "\n")


def translation_job(
    teacher_sha256: str, src_path: Path, lines: int, config: DistillConfig
) -> dict[str, Any]:
    """What is being translated (`parts/job.json`, the job in `raw.json`): the teacher's
    fingerprint, the source's checksum and length, the chunking, the decoding settings and,
    for more than one, the hypotheses per line (`nbest`; which of them become pairs is
    chosen when filtering, not part of the job)."""
    return {
        "teacher_sha256": teacher_sha256,
        "source_sha256": file_sha256(src_path),
        "lines": lines,
        "chunk_lines": config.chunk_lines,
        "compute_type": config.compute_type,
        **config.teacher_options(),
        **config.decoding_options(),
        **config.nbest_options(),
    }


def raw_translation(
    teacher: str | list[str],
    sources: list[str],
    out: Path,
    tgt_lang: str,
    config: DistillConfig,
    job: dict[str, Any],
    force: bool,
    merge: bool = False,
) -> tuple[list[str], dict[str, Any]]:
    """Every teacher output, line-aligned with `sources` (`config.nbest` lines per source,
    best first, "" where the beam gave fewer), and the translation's record (its
    job and totals, `raw.json`): read from `raw.TGT` and `raw.json` when an earlier call
    finished them, otherwise translated (`translate_corpus`) and written there, and the
    parts removed. `force` starts over: only this distillation's own intermediate files go."""
    raw_tgt, raw_info = out / f"raw.{tgt_lang}", out / RAW_INFO
    if force:
        for made in (out / PARTS, out / SHARDS, raw_info):
            remove(made)
    if out.is_dir():
        remove_stale_temporaries(out)
    translation = _read_translation(raw_info) if raw_info.is_file() else None
    if translation is not None and translation["job"] != job:
        raise DistillError(_job_mismatch(raw_info, translation["job"], job))
    if translation is None:
        done = translate_corpus(teacher, sources, out, config, job, merge)
        hyps = done.pop("hypotheses")
        atomic_write_text(raw_tgt, "".join(h + "\n" for h in hyps))
        translation = {"job": job, **done}
        atomic_write_text(raw_info, json.dumps(translation, indent=2) + "\n")
        remove(out / PARTS)
        remove(out / SHARDS)
        return hyps, translation
    log.info("%s: translation already complete; filtering again", out)
    remove(out / PARTS)  # left over from an interrupted cleanup
    hyps = read_lines(raw_tgt)
    if len(hyps) != len(sources) * config.nbest:
        per = f" x {config.nbest} best" if config.nbest > 1 else ""
        raise DistillError(f"{raw_tgt}: {len(hyps)} lines for {len(sources)} sources{per}")
    return hyps, translation


def translate_corpus(
    teacher: str | list[str],
    sources: list[str],
    output_dir: Path,
    config: DistillConfig,
    job: dict[str, Any],
    merge: bool = False,
) -> dict[str, Any]:
    """Translate `sources` chunk by chunk into `parts/`, skipping chunks already there, then
    write `raw.TGT` (via the caller) and return the totals; see `nmt.distill`.

    With `config.shard` K/N, only chunks K, K+N, ... are translated, into
    `shards/K-of-N/parts/`, and the totals of the shard are returned (no hypotheses). A
    whole run first takes the chunks the shard runs of the same job translated; with
    `merge` it translates nothing: a chunk no shard holds, or holds corrupt, is an error
    naming the shard and the file."""
    shard = config.shard_of
    folder = shard_folder(output_dir, *shard) if shard else output_dir
    parts = Parts(folder / PARTS, len(sources), config.chunk_lines, config.nbest)
    ensure_folder(parts.folder)
    remove_stale_temporaries(parts.folder)  # a chunk being written when the run was killed
    mine = job | {"shard": config.shard} if shard else job
    _record_job(parts.folder / JOB, mine)
    if not shard:
        taken = _take_shard_chunks(output_dir, parts, job, strict=merge)
        if taken:
            log.info("took %d chunks translated by shard runs", taken)
    chunks = [i for i in range(parts.count) if not shard or i % shard[1] == shard[0]]
    todo = [i for i in chunks if parts.read(i) is None]
    if merge and todo:
        raise DistillError(_missing_shards(output_dir, todo, parts))
    resumed = len(chunks) - len(todo)
    if resumed:
        log.info("resuming: %d of %d chunks already translated", resumed, parts.count)
    _translate_chunks(teacher, sources, parts, todo, config)
    records = [parts.read(i) for i in chunks]
    if any(r is None for r in records):  # a chunk vanished while we ran: never guess
        raise DistillError(f"{parts.folder}: chunks missing after translation; run again")
    return _totals(records, resumed, config.shard, config.nbest)


def _record_job(path: Path, job: dict[str, Any]) -> None:
    """Write the job file of a parts folder; one already there must name the same job."""
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != job:
            raise DistillError(_job_mismatch(path, previous, job))
    else:
        atomic_write_text(path, json.dumps(job, indent=2) + "\n")


def _translate_chunks(
    teacher: str | list[str],
    sources: list[str],
    parts: Parts,
    todo: list[int],
    config: DistillConfig,
) -> None:
    """Translate the chunks `todo` and write each one as it comes, logging the progress."""
    options = config.decoding_options() | config.nbest_options()
    tasks = ((i, sources[slice(*parts.span(i))], options) for i in todo)
    start = time.perf_counter()
    lines_done = 0
    for n, (index, result) in enumerate(run_tasks(teacher, config, tasks), start=1):
        parts.write(index, result)
        lines_done += len(result["hypotheses"]) // config.nbest
        elapsed = time.perf_counter() - start
        log.info(
            "chunk %d/%d (%d of %d to do): %d lines in %.1f s; %.1f lines/s overall",
            index + 1,
            parts.count,
            n,
            len(todo),
            len(result["hypotheses"]) // config.nbest,
            result["seconds"],
            lines_done / max(elapsed, 1e-9),
        )


def _totals(
    records: list[dict[str, Any]], resumed: int, shard: str, per_line: int
) -> dict[str, Any]:
    """What the chunks of a run add up to: a shard's counts, or the whole corpus's
    hypotheses in order with its totals (`per_line` hypotheses per source line)."""
    seconds = round(sum(r["seconds"] for r in records), 2)
    if shard:
        return {
            "shard": shard,
            "chunks": len(records),
            "chunks_resumed": resumed,
            "lines": sum(len(r["hypotheses"]) for r in records) // per_line,
            "translate_seconds": seconds,
        }
    return {
        "hypotheses": [h for r in records for h in r["hypotheses"]],
        "chunks": len(records),
        "chunks_resumed": resumed,
        "translate_seconds": seconds,
        "target_pieces": sum(r["target_pieces"] for r in records),
    }


def _take_shard_chunks(out: Path, parts: Parts, job: dict[str, Any], strict: bool) -> int:
    """Copy into `parts` the chunks that shard runs of this `job` left in `out/shards/`
    (those `parts` lacks); returns how many. `strict` (merge): a shard folder of another
    job, or a corrupt chunk in one, is an error naming it; otherwise it is skipped with a
    warning and its chunks are translated here."""
    root = out / SHARDS
    if not root.is_dir():
        return 0
    taken = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        job_path = folder / PARTS / JOB
        try:
            theirs = json.loads(job_path.read_text(encoding="utf-8"))
            theirs.pop("shard")
        except (OSError, ValueError, KeyError, AttributeError):
            theirs = None
        if theirs != job:
            problem = (
                _job_mismatch(job_path, theirs, job)
                if isinstance(theirs, dict)
                else f"{job_path}: not a shard's job file"
            )
            if strict:
                raise DistillError(problem)
            log.warning("%s; its chunks are not used", problem)
            continue
        shard = Parts(folder / PARTS, parts.n_lines, parts.chunk_lines, parts.per_line)
        for path in sorted(shard.folder.glob("[0-9]*.json")):
            index = int(path.stem)
            if index >= parts.count or parts.path(index).is_file():
                continue
            record = shard.read(index)
            if record is None:
                if strict:
                    raise DistillError(
                        f"{path}: corrupt chunk of shard {folder.name}; delete it and run that "
                        "shard again (it translates only what is missing), then merge again"
                    )
                continue
            parts.write(index, {k: v for k, v in record.items() if k != "first_line"})
            taken += 1
    return taken


def _missing_shards(out: Path, todo: list[int], parts: Parts) -> str:
    """Which shards still owe which chunks, for a merge that cannot finish."""
    found = sorted(p.name for p in (out / SHARDS).glob("*-of-*")) if (out / SHARDS).is_dir() else []
    counts = {int(name.split("-of-")[1]) for name in found}
    if len(counts) == 1:
        (n,) = counts
        owners = sorted({i % n for i in todo})
        who = "shard(s) " + ", ".join(f"{k}/{n}" for k in owners)
    else:
        who = "no shard run" if not found else "the shard runs (" + ", ".join(found) + ")"
    first, end = parts.span(todo[0])
    return (
        f"{out}: cannot merge: {len(todo)} of {parts.count} chunks missing, owed by {who} "
        f"(first missing: chunk {todo[0]}, lines {first + 1}-{end}); finish those shards "
        "(nmt-distill ... --shard K/N) or run without --merge to translate them here"
    )


def _job_mismatch(path: Path, previous: dict[str, Any], job: dict[str, Any]) -> str:
    """The error for a folder that holds another job: the keys in which the jobs differ."""
    keys = sorted(k for k in set(previous) | set(job) if previous.get(k) != job.get(k))
    return (
        f"{path}: the output folder holds another distillation (differs in: "
        f"{', '.join(keys)}); pass force (--force) to start over or choose another folder"
    )


def _read_translation(path: Path) -> dict[str, Any]:
    """The `raw.json` of a finished translation (its job and totals); DistillError naming
    the file for one that is not (another program's, hand-edited, torn)."""
    totals = ("translate_seconds", "target_pieces", "chunks", "chunks_resumed")
    try:
        translation = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # not JSON, or not UTF-8
        problem = f"not valid JSON ({e})"
    else:
        if not isinstance(translation, dict):
            problem = f"a JSON {type(translation).__name__}, not an object"
        elif not isinstance(translation.get("job"), dict):
            problem = "job is missing or not an object"
        else:
            wrong = [k for k in totals if not isinstance(translation.get(k), int | float)]
            problem = f"{wrong[0]} is missing or not a number" if wrong else ""
    if problem:
        raise DistillError(
            f"{path}: not the record of an nmt-distill translation: {problem}; pass force "
            "(--force) to start over or choose another folder"
        )
    return translation


# --- provenance ------------------------------------------------------------------------------
