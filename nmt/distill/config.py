"""The settings of a distillation, validated on construction: `DistillConfig` (how the
teacher translates, in how many processes, what is kept) and `FilterConfig` (which teacher
outputs are dropped), loaded from YAML with overrides by `load_distill_config`; and
`source_data`, the corpus to distil."""

from __future__ import annotations

from dataclasses import dataclass, field
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
from nmt.data.datasets import DATASETS
from nmt.decoding import Decoding, check_threads

BATCH_TOKENS = 2048  # the teacher's source tokens per batch, by default


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


SELECT = ("all", "closest")  # what DistillConfig.select may be


@dataclass(frozen=True)
class DistillConfig:
    """How the teacher translates, in how many processes, and what is kept."""

    # The teacher's decoding (nmt.decoding.Decoding: beam_size, max_batch_tokens,
    # length_penalty, max_len_a, max_len_b, min_len), batches of BATCH_TOKENS by default.
    decoding: Decoding = field(default_factory=lambda: Decoding(max_batch_tokens=BATCH_TOKENS))
    backend: str = "auto"  # a key of nmt.translate.BACKENDS, or recognised from the path
    device: str = "cpu"
    compute_type: str = "default"  # CTranslate2: as exported
    workers: int = 1  # translator processes
    threads: int = 1  # threads per translator
    chunk_lines: int = 1000  # lines per resumable chunk
    max_lines: int = 0  # distil the first N source lines only (0: all)
    mix: bool = False  # also write mix.*: original pairs + distilled pairs
    # The teacher's N best translations of each source (N <= beam size), and which become
    # pairs: "all" (every one the filters keep, duplicates dropped) or "closest" (the one
    # nearest the reference by sentence chrF: Kim & Rush's seq-inter distillation).
    nbest: int = 1
    select: str = "all"
    shard: str = ""  # "K/N": translate only chunks K, K+N, K+2N, ... (0 <= K < N)
    # A model nmt did not make (nmt.backends.foreign): its tokenizer files and the tokens
    # around each sentence, where the folder does not tell (empty: as recognised).
    tokenizer_files: tuple[str, ...] = ()
    source_prefix: str | None = None
    source_suffix: str | None = None
    target_prefix: str | None = None
    filters: FilterConfig = field(default_factory=FilterConfig)

    def __post_init__(self) -> None:
        check_threads(self.threads, "threads")
        for name in ("workers", "chunk_lines", "nbest"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        beam = self.decoding.beam_size
        check(self.nbest <= beam, "nbest", f"must be at most the beam size {beam}")
        check(self.select in SELECT, "select", f"one of {', '.join(SELECT)}, got {self.select!r}")
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

    def teacher_options(self) -> dict[str, Any]:
        """The `nmt.translate.load` options for a foreign teacher that were given (part of
        the job's identity: another target prefix is another translation)."""
        names = ("tokenizer_files", "source_prefix", "source_suffix", "target_prefix")
        given = {name: getattr(self, name) for name in names}
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in given.items()
            if value not in (None, ())
        }

    def nbest_options(self) -> dict[str, Any]:
        """`{"nbest": N}` for an n-best job, else nothing: the key that joins the job, the
        chunks' translation options and the settings (a 1-best job as it always was)."""
        return {"nbest": self.nbest} if self.nbest > 1 else {}

    def decoding_options(self) -> dict[str, Any]:
        """The options every chunk is translated with (part of the job's identity; a loop
        guard at its default left out, so that adding one changes no job)."""
        return self.decoding.key()


def load_distill_config(
    path: str | Path | None = None,
    overrides: list[str] = (),
    values: dict[str, Any] | None = None,
) -> DistillConfig:
    """A DistillConfig from YAML (or the defaults), then `values` (e.g. command-line flags),
    then ``key=value`` overrides (``filters.max_ratio=3``); errors name the key."""
    raw = load_yaml(path) if path else {}
    for key, value in (values or {}).items():  # a flag replaces one key of a section
        both = isinstance(value, dict) and isinstance(raw.get(key), dict)
        raw[key] = raw[key] | value if both else value
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
