"""What a training run reads: its tokenizer and its encoded training and dev data.

The tokenizer is, in order: the fine-tuning parent's (`train.init_from`; a different one is
an error), `tokenizer.model`, the run folder's `spm.model` (a resumed run), or one trained on
the training corpus. It is always copied to the run folder. The training pairs are filtered
by length (`data.max_tokens`, `data.min_tokens`, `data.max_ratio`; the counts are logged); the
dev set keeps every pair the model can take for the loss, and every line for BLEU.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt.config import ConfigError, DataConfig, RunConfig
from nmt.data.corpus import CorpusError, EncodedCorpus, encode_parallel, read_parallel
from nmt.data.datasets import split_paths
from nmt.fileio import atomic_write_bytes
from nmt.tokenizer import Tokenizer, train_tokenizer
from nmt.training.finetune import Parent, check_tokenizer

log = logging.getLogger(__name__)

TOKENIZER_FILE = "spm.model"


@dataclass
class RunData:
    train: EncodedCorpus  # or a memory-mapped ShardedCorpus (data.prepared)
    valid: EncodedCorpus
    valid_text: tuple[list[str], list[str]]  # dev sources and references, every line
    # Prepared corpora mixed by weights: the batch stream's factory (Manifest.batches)
    weighted: Callable[..., Any] | None = None


def run_tokenizer(config: RunConfig, run_dir: Path, parent: Parent | None = None) -> Tokenizer:
    """The run's tokenizer, kept as `run_dir/spm.model`."""
    c = config.tokenizer
    local = run_dir / TOKENIZER_FILE
    if parent is not None:
        return _parent_tokenizer(parent, c.model, local)
    given = c.model or (
        str(Path(config.data.prepared) / TOKENIZER_FILE) if config.data.prepared else ""
    )
    if given:
        tok = Tokenizer.from_file(given)
        shutil.copyfile(given, local)
        return tok
    if local.exists():
        return Tokenizer.from_file(local)
    files = split_paths(config.data, config.data.train)
    src, tgt = read_parallel(*files)
    if not any(src) or not any(tgt):
        raise CorpusError(f"{files[0 if not any(src) else 1]}: every line is blank")
    try:
        return train_tokenizer(src + tgt, c, local)
    except RuntimeError as e:  # SentencePiece's own checks
        raise CorpusError(f"{files[0]}: cannot train the tokenizer on it ({e})") from None


def _parent_tokenizer(parent: Parent, given: str, local: Path) -> Tokenizer:
    """The parent's tokenizer, copied into the run folder; a tokenizer.model given (or an
    spm.model already there) must be the same one."""
    for path, key in ((given, "tokenizer.model"), (local, str(local))):
        if path and Path(path).is_file():
            tok = Tokenizer.from_file(path)
            check_tokenizer(parent, tok, key)
            break
    else:
        tok = parent.tokenizer
    if not local.is_file():
        atomic_write_bytes(local, tok.model_proto)
    return tok


def run_data(config: RunConfig, tokenizer: Tokenizer) -> RunData:
    """The training pairs (filtered) and the dev set, encoded."""
    d = config.data
    # A kept side is at most this many pieces plus EOS (source) or BOS (target).
    longest = config.model.max_positions - 1
    if d.max_tokens > longest:
        log.info(
            "data.max_tokens %d lowered to %d (model.max_positions - 1)", d.max_tokens, longest
        )
    weighted = None
    if d.prepared:
        manifest = prepared_manifest(Path(d.prepared), tokenizer, longest)
        train = manifest.corpus()
        # weighted (the default): streamed a window of shards at a time, so memory stays
        # flat with corpus size; concat: every pair once an epoch, batched over the whole
        # corpus exactly as in memory (16 bytes a pair held).
        if manifest.mixing == "weighted":
            weighted = manifest.batches
    else:
        train = _encoded_train(d, tokenizer, longest)
    valid_files = split_paths(d, d.valid)
    vsrc, vtgt = read_parallel(*valid_files)
    # The loss needs pairs the model can take; BLEU translates every line (truncated).
    valid = encode_parallel(
        vsrc, vtgt, tokenizer, min_tokens=0, max_tokens=longest, max_ratio=float("inf")
    )
    if valid.stats.kept < valid.stats.total:
        log.warning("valid data (loss only): %s", valid.stats.summary())
    if len(valid) == 0:
        raise CorpusError(f"{valid_files[0]}: no validation pair left ({valid.stats.summary()})")
    return RunData(train, valid, (vsrc, vtgt), weighted)


def _encoded_train(d: DataConfig, tokenizer: Tokenizer, longest: int) -> EncodedCorpus:
    """The training pairs of `data.train`, read and encoded in memory, filtered."""
    train_files = split_paths(d, d.train)
    src, tgt = read_parallel(*train_files)
    train = encode_parallel(
        src,
        tgt,
        tokenizer,
        min_tokens=d.min_tokens,
        max_tokens=min(d.max_tokens, longest),
        max_ratio=d.max_ratio,
    )
    log.info("train data: %s", train.stats.summary())
    if len(train) == 0:
        raise CorpusError(
            f"{train_files[0]}: no training pair survived filtering "
            f"({train.stats.summary()}); check data.max_tokens, data.min_tokens and "
            "data.max_ratio"
        )
    return train


def prepared_manifest(folder: Path, tokenizer: Tokenizer, longest: int):
    """The manifest of the training pairs nmt-prepare wrote to `folder` (read memory-mapped
    through `nmt.prepare.shards`). The folder must have been prepared with the run's tokenizer and
    pairs the model can take."""
    from nmt.prepare.manifest import load_manifest
    from nmt.prepare.shards import ShardError

    try:
        manifest = load_manifest(folder)
    except ShardError as e:
        raise CorpusError(f"data.prepared: {e}") from None
    if manifest.tokenizer.sha256 != tokenizer.sha256():
        raise ConfigError(
            f"data.prepared: {folder} was prepared with tokenizer {manifest.tokenizer.sha256[:12]}"
            f", the run's is {tokenizer.sha256()[:12]} ({tokenizer.source}); leave "
            f"tokenizer.model empty to use {folder / TOKENIZER_FILE}, or prepare again"
        )
    if manifest.filters.max_tokens > longest:
        raise ConfigError(
            f"data.prepared: {folder} keeps pairs of up to {manifest.filters.max_tokens} tokens, "
            f"more than the model takes (model.max_positions - 1 = {longest}); prepare with "
            "max_tokens <= that"
        )
    log.info("train data: prepared %s", manifest.summary())
    return manifest
