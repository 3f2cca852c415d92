"""Sequence-level knowledge distillation (Kim & Rush 2016): a teacher translates the source
side of a training corpus, and students learn from its translations.

`distill(teacher, data, output_dir, config)` writes a dataset folder that trains as is
(`nmt-train --set data.dataset= --set data.data_dir=DIR`, or `--data-dir DIR` for a
registered dataset, whose files are found as `DIR/FILE`):

    train.SRC / train.TGT    the distilled pairs: sources and the teacher's translations,
                             line-aligned, the pairs a filter rejects dropped from both sides
    mix.SRC / mix.TGT        with `mix`: the original pairs, then the distilled ones
                             (`--set data.train=mix`)
    VALID.* / TEST.*         copies of the original validation and test files
    raw.TGT                  every teacher output, line-aligned with the source corpus
    raw.json                 the translation job and its totals (time, tokens)
    stats.json               lines, tokens, time, tokens/s, counts and examples per filter,
                             the most frequent output and its share (`top_output`)
    provenance.json          teacher (path, fingerprint, export or checkpoint info), backend,
                             decoding settings, versions, source files with sha256, date

Resumable: the source is cut into fixed chunks of `chunk_lines` lines; each translated
chunk is written atomically as `parts/NNNNNN.json`, and a restarted run translates only
the chunks still missing, so every line is translated once and the output keeps the
corpus order. `parts/job.json` records what is being translated (teacher fingerprint,
source checksum, decoding settings); parts of another job are never mixed in (`force`
starts over, and only in a folder nmt-distill made: its `.nmt-output.json` marker, see
`nmt.outputs`). Once every chunk is there, `raw.TGT` and `raw.json` are written atomically
and the parts removed. Filtering is cheap and runs on every call, so changing a filter
threshold re-filters without translating again.

A teacher that gives one output for a large share of different sentences (an undertrained
model's "Ein Mann in einem." for everything) is an error (`DistillError`, after writing
stats.json), not a corpus: see `FilterConfig.max_top_share`.

Workers: `workers` translator processes of `threads` threads each, each translating whole
chunks (CTranslate2's advice for throughput on many cores: several one-thread replicas
rather than one translator with many threads).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nmt.config import (
    ConfigError,
    DataConfig,
    apply_overrides,
    check,
    check_number,
    from_dict,
    load_yaml,
)
from nmt.data.corpus import read_lines, read_parallel
from nmt.data.datasets import DATASETS, DatasetError, split_paths
from nmt.decoding import Decoding, check_option, check_threads
from nmt.fileio import atomic_write_text, file_sha256, remove_stale_temporaries
from nmt.outputs import FolderLock, claim, ensure_folder, made_by, remove, write_marker
from nmt.search import SearchOptions
from nmt.weights import WEIGHTS_FILE

log = logging.getLogger(__name__)

DISTILL = "nmt-distill"  # the kind of output a distillation folder is (nmt.outputs)
RAW_INFO = "raw.json"
STATS = "stats.json"
PROVENANCE = "provenance.json"
PARTS = "parts"
JOB = "job.json"
SHARDS = "shards"  # OUT/shards/K-of-N/parts: the chunks of one shard (--shard K/N)
EXAMPLES_PER_FILTER = 5
KEEP_WARNING = 0.9  # warn when the filters keep less than this share of the pairs
TOP_LINE_CHARS = 60  # the most frequent output as stats.json and errors quote it


class DistillError(RuntimeError):
    """The output folder is in the way, or the teacher cannot distil this corpus."""


@dataclass(frozen=True)
class FilterConfig:
    """Which teacher outputs are dropped. Tokens are whitespace-separated; each rejected
    pair is counted under the first filter (in `FILTERS` order) that rejects it. The last
    two keys judge the kept corpus as a whole (`top_output`): one output given for many
    different sentences is a teacher that has collapsed, and an error, not a corpus."""

    max_repeats: int = 4  # degenerate: a unit repeated this many times in a row ...
    repeat_unit_chars: int = 40  # ... of 2 to this many characters (a piece, word or phrase)
    min_unique_ratio: float = 0.3  # degenerate: distinct tokens / tokens below this ...
    unique_min_tokens: int = 10  # ... in outputs of at least this many tokens
    max_overlap: float = 0.8  # copied: share of (lowercased) words in common with the source
    copy_min_tokens: int = 4  # ... checked when the longer side has at least this many words
    max_ratio: float = 2.5  # bad ratio: longer side / shorter side, in tokens ...
    ratio_min_tokens: int = 6  # ... checked when the longer side has at least this many
    # Degenerate corpus: one output is the translation of more than this share of the kept
    # pairs' different sources (1: never). Multi30k's most frequent reference translation
    # is 3 of its 29,000 lines (0.01%); an undertrained teacher gave one line for all.
    max_top_share: float = 0.05
    top_share_min_sources: int = 100  # ... judged from this many different kept sources

    def __post_init__(self) -> None:
        check(self.max_repeats >= 2, "max_repeats", "must be >= 2")
        check(self.repeat_unit_chars >= 2, "repeat_unit_chars", "must be >= 2")
        check_number(self.min_unique_ratio, "min_unique_ratio", "[0, 1]")
        check_number(self.max_overlap, "max_overlap", "(0, 1]")
        check_number(self.max_ratio, "max_ratio", ">= 1")
        check_number(self.max_top_share, "max_top_share", "(0, 1]", " (1: never)")
        for name in (
            "unique_min_tokens",
            "copy_min_tokens",
            "ratio_min_tokens",
            "top_share_min_sources",
        ):
            check(getattr(self, name) >= 1, name, "must be >= 1")


@dataclass(frozen=True)
class DistillConfig:
    """How the teacher translates, in how many processes, and what is kept."""

    beam_size: int = Decoding.beam_size
    batch_tokens: int = 2048  # source tokens per batch
    length_penalty: float = SearchOptions.length_penalty
    max_len_a: float = SearchOptions.max_len_a
    max_len_b: int = SearchOptions.max_len_b
    backend: str = "auto"  # a key of nmt.translate.BACKENDS, or recognised from the path
    device: str = "cpu"
    compute_type: str = "default"  # CTranslate2: as exported
    workers: int = 1  # translator processes
    threads: int = 1  # threads per translator
    chunk_lines: int = 1000  # lines per resumable chunk
    max_lines: int = 0  # distil the first N source lines only (0: all)
    mix: bool = False  # also write mix.*: original pairs + distilled pairs
    shard: str = ""  # "K/N": translate only chunks K, K+N, K+2N, ... (0 <= K < N)
    filters: FilterConfig = field(default_factory=FilterConfig)

    def __post_init__(self) -> None:
        for option, value in self.decoding().items():  # as nmt.decoding.Decoding checks them
            check_option(option, value, "batch_tokens" if option == "max_batch_tokens" else option)
        check_threads(self.threads, "threads")
        for name in ("workers", "chunk_lines"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.max_lines >= 0, "max_lines", "must be >= 0")
        check(self.device in ("cpu", "cuda"), "device", f"cpu or cuda, got {self.device!r}")
        if self.shard:
            k, _, n = self.shard.partition("/")
            ok = k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)
            check(ok, "shard", f"K/N with 0 <= K < N (e.g. 0/4), got {self.shard!r}")

    @property
    def shard_of(self) -> tuple[int, int] | None:
        """(K, N) of `shard`, or None."""
        if not self.shard:
            return None
        k, n = self.shard.split("/")
        return int(k), int(n)

    def decoding(self) -> dict[str, Any]:
        """The options every chunk is translated with (part of the job's identity)."""
        return {
            "beam_size": self.beam_size,
            "max_batch_tokens": self.batch_tokens,
            "length_penalty": self.length_penalty,
            "max_len_a": self.max_len_a,
            "max_len_b": self.max_len_b,
        }


def shard_folder(out: Path, k: int, n: int) -> Path:
    return out / SHARDS / f"{k}-of-{n}"


def load_distill_config(
    path: str | Path | None = None,
    overrides: list[str] = (),
    values: dict[str, Any] | None = None,
) -> DistillConfig:
    """A DistillConfig from YAML (or the defaults), then `values` (e.g. command-line flags),
    then ``key=value`` overrides (``filters.max_ratio=3``); errors name the key."""
    raw = (load_yaml(path) if path else {}) | (values or {})
    raw = apply_overrides(raw, list(overrides))
    try:
        return from_dict(DistillConfig, raw, "")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def source_data(
    data: str,
    data_dir: str = "",
    src_lang: str = "en",
    tgt_lang: str = "de",
    train: str = "train",
    valid: str = "val",
    test: str = "test_2016_flickr",
) -> DataConfig:
    """The corpus to distil: a registered dataset name, or a folder holding
    `TRAIN.SRC`/`TRAIN.TGT` (and the validation and test files to copy)."""
    split = {"src_lang": src_lang, "tgt_lang": tgt_lang, "train": train, "valid": valid}
    if data in DATASETS:
        return DataConfig(dataset=data, data_dir=data_dir, test=test, **split)
    if not Path(data).is_dir():
        raise ConfigError(
            f"--data: {data!r} is neither a registered dataset ({', '.join(DATASETS)}) nor a folder"
        )
    return DataConfig(dataset="", data_dir=data, test=test, **split)


# --- filters ---------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def is_empty(src: str, hyp: str, c: FilterConfig) -> bool:
    return not hyp.strip() or not src.strip()


def is_degenerate(src: str, hyp: str, c: FilterConfig) -> bool:
    """A unit of characters repeated `max_repeats` times in a row (the loops of a decoder:
    "phonphonphonphon", "ein Hund ein Hund ein Hund ein Hund"), or too few distinct tokens."""
    tokens = hyp.split()
    if len(tokens) >= c.unique_min_tokens and len(set(tokens)) / len(tokens) < c.min_unique_ratio:
        return True
    # A space after the last token, so that a repeated phrase's last copy is whole too.
    text = " ".join(tokens) + " "
    return _repeat_pattern(c.max_repeats, c.repeat_unit_chars).search(text) is not None


@functools.lru_cache(maxsize=8)
def _repeat_pattern(repeats: int, unit_chars: int) -> re.Pattern[str]:
    return re.compile(rf"(.{{2,{unit_chars}}}?)\1{{{repeats - 1}}}")


def is_copied(src: str, hyp: str, c: FilterConfig) -> bool:
    """The source itself, or mostly its words (a copy rather than a translation)."""
    if hyp.strip() == src.strip():
        return True
    s, h = _words(src), _words(hyp)
    longer = max(len(s), len(h))
    if longer < c.copy_min_tokens:
        return False
    common = sum((Counter(s) & Counter(h)).values())
    return common / longer >= c.max_overlap


def is_bad_ratio(src: str, hyp: str, c: FilterConfig) -> bool:
    ls, lh = len(src.split()), len(hyp.split())
    longer, shorter = max(ls, lh), max(min(ls, lh), 1)
    return longer >= c.ratio_min_tokens and longer / shorter > c.max_ratio


# name -> test; a pair is rejected by the first that says True.
FILTERS: dict[str, Callable[[str, str, FilterConfig], bool]] = {
    "empty": is_empty,
    "degenerate": is_degenerate,
    "copied": is_copied,
    "bad_ratio": is_bad_ratio,
}


def filter_pairs(
    sources: list[str], hyps: list[str], config: FilterConfig
) -> tuple[list[int], dict[str, int], dict[str, list[dict[str, Any]]]]:
    """Indices of the pairs kept; rejected counts per filter; a few examples of each."""
    kept: list[int] = []
    counts = dict.fromkeys(FILTERS, 0)
    examples: dict[str, list[dict[str, Any]]] = {name: [] for name in FILTERS}
    for i, (src, hyp) in enumerate(zip(sources, hyps, strict=True)):
        reason = next((name for name, test in FILTERS.items() if test(src, hyp, config)), None)
        if reason is None:
            kept.append(i)
            continue
        counts[reason] += 1
        if len(examples[reason]) < EXAMPLES_PER_FILTER:
            examples[reason].append({"line": i + 1, "src": src, "hyp": hyp})
    return kept, counts, examples


def top_output(sources: list[str], hyps: list[str], kept: list[int]) -> dict[str, Any]:
    """The kept output given for the most different sources: the line (cut to
    `TOP_LINE_CHARS`), its kept lines and their share of the kept pairs, its different
    sources and their share of the kept pairs' different sources. Different sources,
    because a corpus that repeats a pair repeats its translation too; a collapsed teacher
    gives one output for thousands of different sentences."""
    lines = Counter(hyps[i] for i in kept)
    sources_per_line = Counter(hyp for hyp, _ in {(hyps[i], sources[i]) for i in kept})
    kept_sources = len({sources[i] for i in kept})
    # the first in corpus order among equals: a Counter keeps insertion order
    top = max(lines, key=lambda h: (sources_per_line[h], lines[h]), default="")
    cut = top if len(top) <= TOP_LINE_CHARS else top[: TOP_LINE_CHARS - 3] + "..."
    return {
        "line": cut,
        "lines": lines[top],
        "share": round(lines[top] / max(len(kept), 1), 6),
        "sources": sources_per_line[top],
        "source_share": round(sources_per_line[top] / max(kept_sources, 1), 6),
        "kept_sources": kept_sources,
    }


# --- translation in resumable chunks ---------------------------------------------------------


def _translate_chunk(translator, lines: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """Translate one chunk; its hypotheses (one line each), seconds and target pieces."""
    start = time.perf_counter()
    hyps = translator.translate(lines, **options)
    seconds = time.perf_counter() - start
    hyps = [" ".join(h.split()) for h in hyps]  # no newline or tab can break the alignment
    tokenizer = getattr(translator, "tokenizer", None)
    pieces = sum(map(len, tokenizer.encode(hyps))) if tokenizer else 0
    return {"hypotheses": hyps, "seconds": round(seconds, 3), "target_pieces": pieces}


def _load_teacher(teacher: str | list[str], config: DistillConfig):
    from nmt.translate import load

    return load(
        teacher,
        backend=config.backend,
        device=config.device,
        threads=config.threads,
        compute_type=config.compute_type,
        inter_threads=1,
    )


_worker_translator = None  # one teacher per worker process


def _worker_init(teacher: str | list[str], config: DistillConfig) -> None:
    global _worker_translator
    logging.basicConfig(level=logging.WARNING)
    _worker_translator = _load_teacher(teacher, config)


def _worker_translate(task: tuple[int, list[str], dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    index, lines, options = task
    return index, _translate_chunk(_worker_translator, lines, options)


class Parts:
    """The chunk files of one translation job in `folder`."""

    def __init__(self, folder: Path, n_lines: int, chunk_lines: int):
        self.folder, self.n_lines, self.chunk_lines = folder, n_lines, chunk_lines
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
        if part.get("first_line") != first or len(part.get("hypotheses", ())) != end - first:
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


def translate_corpus(
    teacher: str | list[str],
    sources: list[str],
    output_dir: Path,
    config: DistillConfig,
    job: dict[str, Any],
    merge: bool = False,
) -> dict[str, Any]:
    """Translate `sources` chunk by chunk into `parts/`, skipping chunks already there, then
    write `raw.TGT` (via the caller) and return the totals; see the module docstring.

    With `config.shard` K/N, only chunks K, K+N, ... are translated, into
    `shards/K-of-N/parts/`, and the totals of the shard are returned (no hypotheses). A
    whole run first takes the chunks the shard runs of the same job translated; with
    `merge` it translates nothing: a chunk no shard holds, or holds corrupt, is an error
    naming the shard and the file."""
    shard = config.shard_of
    folder = shard_folder(output_dir, *shard) if shard else output_dir
    parts = Parts(folder / PARTS, len(sources), config.chunk_lines)
    ensure_folder(parts.folder)
    remove_stale_temporaries(parts.folder)  # a chunk being written when the run was killed
    job_path = parts.folder / JOB
    mine = job | {"shard": config.shard} if shard else job
    if job_path.is_file():
        previous = json.loads(job_path.read_text(encoding="utf-8"))
        if previous != mine:
            raise DistillError(_job_mismatch(job_path, previous, mine))
    else:
        atomic_write_text(job_path, json.dumps(mine, indent=2) + "\n")
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
    options = config.decoding()
    tasks = ((i, sources[slice(*parts.span(i))], options) for i in todo)
    start = time.perf_counter()
    lines_done = 0
    for n, (index, result) in enumerate(_run_tasks(teacher, config, tasks), start=1):
        parts.write(index, result)
        lines_done += len(result["hypotheses"])
        elapsed = time.perf_counter() - start
        log.info(
            "chunk %d/%d (%d of %d to do): %d lines in %.1f s; %.1f lines/s overall",
            index + 1,
            parts.count,
            n,
            len(todo),
            len(result["hypotheses"]),
            result["seconds"],
            lines_done / max(elapsed, 1e-9),
        )
    records = [parts.read(i) for i in chunks]
    if any(r is None for r in records):  # a chunk vanished while we ran: never guess
        raise DistillError(f"{parts.folder}: chunks missing after translation; run again")
    if shard:
        return {
            "shard": config.shard,
            "chunks": len(chunks),
            "chunks_resumed": resumed,
            "lines": sum(len(r["hypotheses"]) for r in records),
            "translate_seconds": round(sum(r["seconds"] for r in records), 2),
        }
    return {
        "hypotheses": [h for r in records for h in r["hypotheses"]],
        "chunks": parts.count,
        "chunks_resumed": resumed,
        "translate_seconds": round(sum(r["seconds"] for r in records), 2),
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
        shard = Parts(folder / PARTS, parts.n_lines, parts.chunk_lines)
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


def _run_tasks(
    teacher: str | list[str], config: DistillConfig, tasks
) -> Iterator[tuple[int, dict]]:
    """Translate tasks in order: in this process, or in `workers` spawned processes."""
    if config.workers == 1:
        translator = _load_teacher(teacher, config)
        for index, lines, options in tasks:
            yield index, _translate_chunk(translator, lines, options)
        return
    context = multiprocessing.get_context("spawn")  # no forked copies of threaded runtimes
    with context.Pool(config.workers, _worker_init, (teacher, config)) as pool:
        yield from pool.imap(_worker_translate, tasks)


def _job_mismatch(path: Path, previous: dict[str, Any], job: dict[str, Any]) -> str:
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


def teacher_info(teacher: str | Path | list[str]) -> dict[str, Any]:
    """Where the teacher comes from: its export or checkpoint info and a fingerprint
    (sha256 over its model files) that identifies it in the job and the provenance; for an
    ensemble, its members' and a fingerprint of them all."""
    if isinstance(teacher, list):
        members = [teacher_info(t) for t in teacher]
        digest = hashlib.sha256("".join(m["sha256"] for m in members).encode()).hexdigest()
        return {
            "path": " + ".join(m["path"] for m in members),
            "members": members,
            "sha256": digest,
        }
    from nmt.checkpoint import find_checkpoint, load_checkpoint
    from nmt.export.folder import EXPORT_INFO

    path = Path(teacher)
    if path.is_dir() and (path / EXPORT_INFO).is_file():
        files = sorted(f for f in path.rglob("*") if f.is_file())
        info: dict[str, Any] = {"export": json.loads((path / EXPORT_INFO).read_text())}
        digest = hashlib.sha256()
        for f in files:
            digest.update(f"{f.relative_to(path)}\0{file_sha256(f)}\n".encode())
        info["sha256"] = digest.hexdigest()
    else:
        ckpt = find_checkpoint(path)
        state = load_checkpoint(ckpt)
        info = {
            "checkpoint": {
                "file": str(ckpt.resolve()),
                "step": state.get("step"),
                "nmt_version": state.get("nmt_version"),
                "model_config": state.get("model_config"),
                "tokenizer_sha256": state.get("tokenizer_sha256"),
                "averaged_from": state.get("averaged_from"),
                "validation": state.get("validation"),
            },
            "sha256": file_sha256(ckpt),
        }
    return {"path": str(path.resolve()), **info}


def checkpoint_dev_bleu(checkpoint: str | Path) -> float | None:
    """The dev BLEU of a run's model as its run's summary.json records it: `averaged` for
    averaged.pt, `best_valid_bleu` for best.pt and for the weights of an adopted model
    (`nmt.training.adopt`). None when unknown: no summary beside it (a run not finished, a copied
    file), another file (last.pt, a step snapshot), or a run that validated on loss alone
    (train.valid_bleu: false)."""
    path = Path(checkpoint)
    try:
        summary = json.loads((path.parent / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    if path.name == "averaged.pt":
        averaged = summary.get("averaged")
        bleu = averaged.get("valid_bleu") if isinstance(averaged, dict) else None
    elif path.name == "best.pt" or (path.name == WEIGHTS_FILE and "adopted" in summary):
        bleu = summary.get("best_valid_bleu")  # -1 when no validation measured BLEU
    else:
        return None
    return float(bleu) if isinstance(bleu, int | float) and bleu >= 0 else None


def _teacher_dev_bleu(teacher: dict[str, Any]) -> float | None:
    """`checkpoint_dev_bleu` of a `teacher_info`'s checkpoint, or its export's source."""
    source = teacher.get("checkpoint", {}).get("file") or teacher.get("export", {}).get(
        "source_checkpoint"
    )
    return checkpoint_dev_bleu(source) if source else None


# --- the whole job ---------------------------------------------------------------------------


@dataclass
class DistillResult:
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
        return (
            f"{s['kept']} of {s['lines']} pairs kept (removed: {removed}); most frequent "
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
    distilled dataset folder `output_dir` (see the module docstring). Resumes an
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
    teacher: str | Path,
    data: DataConfig,
    out: Path,
    config: DistillConfig,
    force: bool,
    merge: bool = False,
) -> DistillResult:
    wall = time.perf_counter()
    src_path, tgt_path = split_paths(data, data.train)
    sources, targets = read_parallel(src_path, tgt_path)
    if config.max_lines:
        sources, targets = sources[: config.max_lines], targets[: config.max_lines]
    teacher_meta = teacher_info(teacher)
    job = {
        "teacher_sha256": teacher_meta["sha256"],
        "source_sha256": file_sha256(src_path),
        "lines": len(sources),
        "chunk_lines": config.chunk_lines,
        "compute_type": config.compute_type,
        **config.decoding(),
    }
    raw_tgt, raw_info = out / f"raw.{data.tgt_lang}", out / RAW_INFO
    if config.shard:
        return _distill_shard(teacher, sources, out, config, job, force)
    if force:  # start over: only this distillation's own intermediate files go
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
    else:
        log.info("%s: translation already complete; filtering again", out)
        remove(out / PARTS)  # left over from an interrupted cleanup
        hyps = read_lines(raw_tgt)
        if len(hyps) != len(sources):
            raise DistillError(f"{raw_tgt}: {len(hyps)} lines for {len(sources)} sources")

    kept, counts, examples = filter_pairs(sources, hyps, config.filters)
    top = top_output(sources, hyps, kept)  # over the whole corpus, however many calls made it
    src_lang, tgt_lang = data.src_lang, data.tgt_lang
    written = {
        f"train.{src_lang}": [sources[i] for i in kept],
        f"train.{tgt_lang}": [hyps[i] for i in kept],
    }
    if config.mix:
        written[f"mix.{src_lang}"] = sources + written[f"train.{src_lang}"]
        written[f"mix.{tgt_lang}"] = targets + written[f"train.{tgt_lang}"]

    seconds = translation["translate_seconds"]
    target_words = sum(len(h.split()) for h in hyps)
    stats = {
        "lines": len(sources),
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
        "sentences_per_s": round(len(sources) / max(seconds, 1e-9), 1),
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
            **config.decoding(),
        },
        "examples": examples,
    }
    stats["hardware"] = _hardware(config.device)
    atomic_write_text(out / STATS, json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    bleu = _teacher_dev_bleu(teacher_meta)
    degenerate = _degenerate_corpus(top, len(kept), config.filters, bleu)
    if degenerate:  # stats.json shows it; no train files a student could learn from
        raise DistillError(f"{degenerate} (statistics: {out / STATS})")
    for name, lines in written.items():
        atomic_write_text(out / name, "".join(line + "\n" for line in lines))
    copied = _copy_splits(data, out)
    provenance = _provenance(teacher_meta, config, data, src_path, tgt_path, out, written, copied)
    atomic_write_text(out / PROVENANCE, json.dumps(provenance, indent=2) + "\n")
    result = DistillResult(out, stats)
    log.info("distilled: %s", result.summary())
    if len(kept) < KEEP_WARNING * len(sources):
        log.warning(
            "the filters dropped %.0f%% of the teacher's outputs (examples in %s): is the "
            "teacher trained enough, and are the thresholds right for this corpus?",
            100 * (1 - len(kept) / len(sources)),
            out / STATS,
        )
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


def _degenerate_corpus(
    top: dict[str, Any], kept: int, c: FilterConfig, dev_bleu: float | None
) -> str:
    """Why the kept corpus is one output given for everything (see `top_output`), or ""."""
    if top["kept_sources"] < c.top_share_min_sources or top["source_share"] <= c.max_top_share:
        return ""
    bleu = "unknown" if dev_bleu is None else f"{dev_bleu:.2f}"
    return (
        f"the teacher's translations are degenerate: {top['lines']:,} of {kept:,} kept "
        f"lines ({top['share']:.1%}) are "
        f"{top['line']!r}, the output for {top['sources']:,} of {top['kept_sources']:,} "
        f"different sentences ({top['source_share']:.1%}, above filters.max_top_share "
        f"{c.max_top_share:g}); the teacher is probably undertrained (dev BLEU {bleu}): train "
        "it longer (more updates), or raise filters.max_top_share if this corpus is like that"
    )


def _copy_splits(data: DataConfig, out: Path) -> list[str]:
    """Copy the validation and test files beside the distilled train files."""
    copied = []
    for split in dict.fromkeys((data.valid, data.test)):
        try:
            paths = split_paths(data, split)
        except DatasetError as e:
            log.warning("not copying split %s: %s", split, e)
            continue
        if not all(p.is_file() for p in paths):
            log.warning("not copying split %s: %s not found", split, " or ".join(map(str, paths)))
            continue
        for path, lang in zip(paths, (data.src_lang, data.tgt_lang), strict=True):
            atomic_write_text(out / f"{split}.{lang}", path.read_text(encoding="utf-8"))
            copied.append(f"{split}.{lang}")
    return copied


def _hardware(device: str) -> dict[str, Any]:
    from nmt.machine import hardware

    return hardware(device)


def _provenance(
    teacher: dict[str, Any],
    config: DistillConfig,
    data: DataConfig,
    src_path: Path,
    tgt_path: Path,
    out: Path,
    written: dict[str, list[str]],
    copied: list[str],
) -> dict[str, Any]:
    from nmt.machine import versions

    backend = config.backend
    if backend == "auto":
        from nmt.translate import BACKENDS

        backend = next((n for n, (ok, _) in BACKENDS.items() if ok(Path(teacher["path"]))), "?")
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else None,
        "teacher": {**teacher, "backend": backend, "compute_type": config.compute_type},
        "decoding": config.decoding(),
        "workers": config.workers,
        "threads": config.threads,
        "source": {
            "data": asdict(data),
            "max_lines": config.max_lines,
            "files": {str(p): file_sha256(p) for p in (src_path, tgt_path)},
        },
        "filters": asdict(config.filters),
        "mix": config.mix,
        "outputs": {name: file_sha256(out / name) for name in [*written, *copied]},
        "versions": versions(),
    }
