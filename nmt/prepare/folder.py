"""`nmt-prepare`: corpora larger than memory, encoded once into memory-mapped shards.

`prepare(config, tokenizer, out_dir, workers=N)` streams each corpus of a `PrepareConfig`
(line-aligned files, plain or gzip, or one TSV file) in chunks of `shard_lines` input lines,
encodes them with SentencePiece in N spawned processes, filters them, and writes one shard
per chunk (format: `nmt.prepare.shards`) and finally `manifest.json` (`nmt.prepare.manifest`):

    OUT/job.json           what is being prepared: the sources' and tokenizer's sha256 and
                           the settings that decide the shards' content
    OUT/spm.model          the tokenizer (a copy of the one given, or trained here)
    OUT/shards/*.shard     CORPUS.NNNNN.shard: the kept pairs of input lines
                           NNNNN * shard_lines + 1 ... of that corpus
    OUT/manifest.json      written last: sources, tokenizer, counts, shards, versions

Filters, each pair counted under the first that rejects it: empty side, too short or too
long (in pieces), bad length ratio (as `nmt.data.corpus.encode_parallel`), identical sides, and
exact duplicate pairs (`dedup`, across shards and corpora: the first occurrence in corpus
order stays; `nmt.prepare.writer.PairHashes` keeps 8 bytes a kept pair).

Resumable and never mixed: a shard is written atomically, once, and never rewritten. A
rerun of the same job writes only the shards still missing (the others are checked by
their header, which names the checksum of their input) and gives byte-identical shards,
whatever the number of workers. A finished folder is up to date only while every shard is
the file its manifest lists (size and sha256): a damaged one is made again, alone. A changed
source file, tokenizer or setting makes the folder stale: `check_prepared` says so in one
line, and `prepare` refuses to go on until `force` starts over, which removes only what
nmt-prepare made there.

The tokenizer: a `Tokenizer` or the path of a SentencePiece model; or a `TokenizerConfig`,
whose `model` is used when set and otherwise is trained (`nmt.tokenizer.train_tokenizer`)
on `tokenizer_sentences` sentences reservoir-sampled, with `seed`, from the corpora in the
shares of their weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from nmt import __version__
from nmt.config import TokenizerConfig, check
from nmt.data.sources import CorpusFiles, corpus_files
from nmt.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    file_sha256,
    remove_stale_temporaries,
)
from nmt.outputs import FolderLock, claim, remove
from nmt.prepare.config import CorpusSpec, PrepareConfig, PrepareRun, load_prepare_run
from nmt.prepare.manifest import (
    FORMAT,
    MANIFEST,
    VERSION,
    CorpusInfo,
    FilterCounts,
    Manifest,
    ShardInfo,
    SourceFile,
    TokenizerInfo,
    load_manifest,
)
from nmt.prepare.shards import SUFFIX, ShardError, token_dtype
from nmt.prepare.tokenizer import folder_tokenizer, load_tokenizer
from nmt.prepare.worker import Filters
from nmt.prepare.writer import Tally, write_shards
from nmt.tokenizer import Tokenizer

__all__ = [
    "CorpusSpec",
    "PrepareConfig",
    "PrepareError",
    "PrepareRun",
    "check_prepared",
    "load_prepare_run",
    "prepare",
]

log = logging.getLogger(__name__)

PREPARE = "nmt-prepare"  # the kind of output a prepared folder is (nmt.outputs)
JOB = "job.json"
TOKENIZER = "spm.model"
SHARDS = "shards"
WORKERS = 1  # encoding processes (nmt-prepare --workers)


class PrepareError(RuntimeError):
    """The output folder is in the way: stale, or holding files nmt-prepare did not make."""


# --- preparing ---------------------------------------------------------------------------------


def prepare(
    config: PrepareConfig,
    tokenizer: Tokenizer | TokenizerConfig | str | Path,
    out_dir: str | Path,
    *,
    workers: int = WORKERS,
    force: bool = False,
) -> Manifest:
    """Prepare the corpora of `config` into `out_dir` (see the module docstring) and return
    its manifest; an up-to-date folder is returned as it is (with the weights of `config`).
    One process at a time writes a folder (a second one fails at once). Workers are
    spawned: a script calling this with `workers > 1` needs an `if __name__ == "__main__":`
    guard, as every spawning script does."""
    check(bool(config.corpora), "corpora", "no corpus to prepare")
    check(workers >= 1, "workers", f"must be >= 1, got {workers}")
    out = Path(out_dir)
    corpora = resolve_corpora(config)
    given = None if isinstance(tokenizer, Tokenizer | TokenizerConfig) else Path(tokenizer)
    if isinstance(tokenizer, TokenizerConfig) and tokenizer.model:
        given = Path(tokenizer.model)
    inputs = [p for c in corpora for p in c.files]
    if given and os.path.realpath(given) != os.path.realpath(out / TOKENIZER):
        inputs.append(given)  # (the tokenizer this folder made, given back, is its own)
    claim(out, PREPARE, inputs=inputs, force=force, resumable=True).make()
    with FolderLock(out, "nmt-prepare"):
        return _prepare(config, tokenizer, corpora, out, workers, force, given)


def ensure_prepared(
    config_path: str | Path, data_dir: str | None = None, *, workers: int = WORKERS
) -> Path:
    """The output folder of the `nmt-prepare` config at `config_path`, prepared first when
    it is missing or incomplete (an interrupted run resumes) or stale (a source, the
    tokenizer or a setting changed: prepared again, which replaces only what nmt-prepare
    made there). `data_dir` replaces the config's `prepare.data_dir`. nmt-train calls this
    when `data.prepared` names a YAML file."""
    run = load_prepare_run(config_path, data_dir)
    out = Path(run.output_dir)
    why = check_prepared(run.prepare, run.tokenizer, out)
    if why is not None:
        log.info("%s; preparing it (%s)", why, config_path)
        prepare(
            run.prepare,
            run.tokenizer,
            out,
            workers=workers,
            force=why.startswith(f"{out}: stale:"),
        )
    return out


def check_prepared(
    config: PrepareConfig,
    tokenizer: Tokenizer | TokenizerConfig | str | Path,
    out_dir: str | Path,
) -> str | None:
    """None when `out_dir` holds the finished preparation of `config` with `tokenizer`;
    else one line saying what is missing or what changed since (hashes every source)."""
    out = Path(out_dir)
    previous = _read_job(out)
    if previous is None:
        return f"{out}: not prepared (no {JOB})"
    corpora = resolve_corpora(config)
    files = _hash_sources(corpora)
    if isinstance(tokenizer, TokenizerConfig):  # the model named, or the one trained here
        tokenizer = Path(tokenizer.model) if tokenizer.model else out / TOKENIZER
        if not tokenizer.is_file():
            return f"{out}: incomplete: no {TOKENIZER}"
    tok = load_tokenizer(tokenizer)
    change = describe_change(previous["identity"], _identity(config, corpora, files, tok), corpora)
    if change:
        return f"{out}: stale: {change}"
    try:
        manifest = load_manifest(out)
    except ShardError as e:
        return str(e)
    damaged = manifest.damaged()
    if damaged:
        shard, problem = damaged[0]
        return f"{out}: incomplete: {shard.file} is {problem}"
    return None


def filters_of(config: PrepareConfig) -> Filters:
    return Filters(config.min_tokens, config.max_tokens, config.max_ratio, config.drop_identical)


def resolve_corpora(config: PrepareConfig) -> list[CorpusFiles]:
    """The files of each corpus (CorpusError when one is missing)."""
    root = Path(config.data_dir) if config.data_dir else None
    out = []
    for spec in config.corpora:
        path = Path(spec.path)
        if root is not None and not path.is_absolute():
            path = root / path
        out.append(corpus_files(spec.name, path, spec.format, config.src_lang, config.tgt_lang))
    return out


def _prepare(
    config: PrepareConfig,
    tokenizer: Tokenizer | TokenizerConfig | str | Path,
    corpora: list[CorpusFiles],
    out: Path,
    workers: int,
    force: bool,
    given: Path | None,
) -> Manifest:
    if force:
        _clear(out, keep=given)
    for folder in (out, out / SHARDS):
        if folder.is_dir():
            remove_stale_temporaries(folder)
    files = _hash_sources(corpora)
    previous = _read_job(out)
    sources = _sources_identity(corpora, files)
    if previous is not None and previous["identity"]["corpora"] != sources:
        raise _stale(out, describe_change(previous["identity"], {"corpora": sources}, corpora))
    tok, origin = folder_tokenizer(
        tokenizer, config, corpora, out / TOKENIZER, reuse=previous is not None
    )
    identity = _identity(config, corpora, files, tok)
    if previous is not None and previous["identity"] != identity:
        raise _stale(out, describe_change(previous["identity"], identity, corpora))
    local = out / TOKENIZER
    if not (local.is_file() and local.read_bytes() == tok.model_proto):
        atomic_write_bytes(local, tok.model_proto)
    if previous is None:
        paths = {c.name: [str(p) for p in c.files] for c in corpora}
        atomic_write_text(out / JOB, json.dumps({"identity": identity, "paths": paths}, indent=1))
    manifest = _finished(out, config)
    if manifest is not None:
        return manifest
    (out / MANIFEST).unlink(missing_ok=True)  # a manifest stands for a complete folder
    tokenizer_info = TokenizerInfo(TOKENIZER, tok.sha256(), tok.vocab_size, origin)
    shards, tallies = write_shards(
        corpora,
        tok,
        out / SHARDS,
        shard_lines=config.shard_lines,
        filters=filters_of(config),
        dedup=config.dedup,
        workers=workers,
    )
    manifest = _manifest(config, corpora, files, tokenizer_info, tok, tallies, shards, out)
    atomic_write_text(out / MANIFEST, manifest.to_json())
    log.info("prepared: %s", manifest.summary())
    return manifest


def _finished(out: Path, config: PrepareConfig) -> Manifest | None:
    """The folder's manifest when it is complete and every shard is the file it lists
    (size and sha256), with `config`'s weights and mixing; else None, having removed the
    damaged shards so that they are made again."""
    try:
        manifest = load_manifest(out)
    except ShardError:
        return None
    damaged = manifest.damaged()
    for shard, problem in damaged:
        log.warning("%s: %s is %s; making it again", out, shard.file, problem)
        path = out / shard.file
        if path.parent == out / SHARDS and path.name.endswith(SUFFIX):  # ours, never else
            path.unlink(missing_ok=True)  # a finished shard is never rewritten in place
    if damaged:
        return None
    weights = tuple(s.weight for s in config.corpora)
    if weights != tuple(c.weight for c in manifest.corpora) or manifest.mixing != config.mixing:
        corpora = tuple(
            dataclasses.replace(c, weight=w) for c, w in zip(manifest.corpora, weights, strict=True)
        )
        manifest = dataclasses.replace(manifest, corpora=corpora, mixing=config.mixing)
        atomic_write_text(out / MANIFEST, manifest.to_json())
    log.info("%s: up to date (%d shards)", out, len(manifest.shards))
    return manifest


def _manifest(
    config: PrepareConfig,
    corpora: list[CorpusFiles],
    files: list[tuple[SourceFile, ...]],
    tokenizer_info: TokenizerInfo,
    tok: Tokenizer,
    tallies: list[Tally],
    shards: list[ShardInfo],
    out: Path,
) -> Manifest:
    infos = []
    for spec, corpus, sources, t in zip(config.corpora, corpora, files, tallies, strict=True):
        for what, count in (
            ("CR of CRLF line endings stripped", t.crlf),
            ("control characters (NUL, ...) replaced by spaces", t.control),
        ):
            if count:
                log.warning("%s: %s on %d lines", corpus.name, what, count)
        infos.append(
            CorpusInfo(
                name=corpus.name,
                weight=spec.weight,
                format=corpus.format,
                files=sources,
                lines=t.lines,
                pairs=t.pairs,
                shards=t.shards,
                src_tokens=t.src_tokens,
                tgt_tokens=t.tgt_tokens,
                filtered=t.filtered,
                crlf_lines=t.crlf,
                control_lines=t.control,
            )
        )
    total = FilterCounts()
    for info in infos:
        total += info.filtered
    return Manifest(
        format=FORMAT,
        version=VERSION,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        versions=_versions(),
        dtype=token_dtype(tok.vocab_size),
        tokenizer=tokenizer_info,
        filters=filters_of(config),
        dedup=config.dedup,
        shard_lines=config.shard_lines,
        mixing=config.mixing,
        lines=sum(t.lines for t in tallies),
        pairs=total.kept,
        filtered=total,
        corpora=tuple(infos),
        shards=tuple(shards),
        folder=str(out),
    )


def _versions() -> dict[str, str]:
    return {
        "nmt": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sentencepiece": spm.__version__,
    }


# --- what the folder was made from -------------------------------------------------------------


def _hash_sources(corpora: list[CorpusFiles]) -> list[tuple[SourceFile, ...]]:
    out = []
    for corpus in corpora:
        out.append(
            tuple(SourceFile(str(p), file_sha256(p), p.stat().st_size) for p in corpus.files)
        )
    return out


def _sources_identity(
    corpora: list[CorpusFiles], files: list[tuple[SourceFile, ...]]
) -> list[dict[str, Any]]:
    """What the shards depend on in the sources: content, not paths (a moved corpus is
    still prepared)."""
    return [
        {"name": c.name, "format": c.format, "sha256": [f.sha256 for f in fs]}
        for c, fs in zip(corpora, files, strict=True)
    ]


def _identity(
    config: PrepareConfig,
    corpora: list[CorpusFiles],
    files: list[tuple[SourceFile, ...]],
    tok: Tokenizer,
) -> dict[str, Any]:
    """Everything the shards' bytes depend on (weights and mixing are not: they only decide
    how batches are drawn)."""
    return {
        "version": VERSION,
        "corpora": _sources_identity(corpora, files),
        "tokenizer_sha256": tok.sha256(),
        "dtype": token_dtype(tok.vocab_size),
        "shard_lines": config.shard_lines,
        "filters": asdict(filters_of(config)),
        "dedup": config.dedup,
    }


def describe_change(old: dict[str, Any], new: dict[str, Any], corpora: list[CorpusFiles]) -> str:
    """The first difference between two job identities, in words."""
    before, after = old.get("corpora", []), new.get("corpora", [])
    if [c["name"] for c in before] != [c["name"] for c in after]:
        names = (", ".join(c["name"] for c in x) or "none" for x in (before, after))
        return "the corpora changed ({} -> {})".format(*names)
    for a, b, corpus in zip(before, after, corpora, strict=True):
        if a["format"] != b["format"]:
            return f"corpus {corpus.name}: format changed ({a['format']} -> {b['format']})"
        for x, y, path in zip(a["sha256"], b["sha256"], corpus.files, strict=True):
            if x != y:
                return f"{path} changed since it was prepared (sha256 {x[:12]} -> {y[:12]})"
    for key in sorted(set(old) | set(new)):
        if key == "corpora" or old.get(key) == new.get(key):
            continue
        if key == "tokenizer_sha256":
            return f"the tokenizer changed (sha256 {old[key][:12]} -> {new[key][:12]})"
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            for sub in sorted(set(old[key]) | set(new[key])):
                if old[key].get(sub) != new[key].get(sub):
                    return f"{sub} changed ({old[key].get(sub)} -> {new[key].get(sub)})"
        return f"{key} changed ({old.get(key)} -> {new.get(key)})"
    return ""


def _stale(out: Path, change: str) -> PrepareError:
    return PrepareError(
        f"{out}: stale: {change}; use --force to prepare it again (it replaces only what "
        "nmt-prepare made) or choose another folder"
    )


def _read_job(out: Path) -> dict[str, Any] | None:
    try:
        job = json.loads((out / JOB).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PrepareError(f"{out / JOB}: damaged; use --force to start over") from None
    if not isinstance(job, dict) or not isinstance(job.get("identity"), dict):
        raise PrepareError(f"{out / JOB}: not an nmt-prepare job; use --force to start over")
    return job


# --- the output folder -------------------------------------------------------------------------


def _clear(out: Path, keep: Path | None) -> None:
    """Remove what nmt-prepare made in `out` (not the tokenizer given, if it lies there)."""
    for name in (MANIFEST, JOB, TOKENIZER):
        path = out / name
        if os.path.lexists(path) and not (keep and keep.exists() and path.samefile(keep)):
            remove(path)
    remove(out / SHARDS)
    log.info("%s: removed the earlier preparation (--force)", out)
