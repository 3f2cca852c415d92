"""The configuration of `nmt-prepare`: which corpora, how they are filtered, sharded and
mixed (`PrepareConfig`), and the file `nmt-prepare --config` reads (`PrepareRun`).

Frozen dataclasses loaded with `nmt.config.from_dict`: unknown keys and wrong types are
errors naming the key (``prepare.corpora[1].weight``). They depend on nothing but
`nmt.config`, so a run config can take them in as a section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nmt.config import (
    ConfigError,
    TokenizerConfig,
    check,
    check_name,
    check_number,
    from_dict,
    load_yaml,
)

FORMATS = ("auto", "parallel", "tsv")
MIXING = ("weighted", "concat")


@dataclass(frozen=True)
class CorpusSpec:
    """One training corpus. `path`: a file prefix (PATH.SRC_LANG and PATH.TGT_LANG, each
    plain or .gz) or one tab-separated file (`src<TAB>tgt` a line, .tsv or .tsv.gz), found
    in `data_dir` when relative. `weight`: the share of the training examples drawn from
    this corpus is weight / (sum of the weights), whatever its size (0: prepared, not
    trained on); see `nmt.prepare.shards.ShardBatches`."""

    name: str
    path: str
    format: str = "auto"  # auto (TSV if the path ends in .tsv or .tsv.gz), parallel or tsv
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        check(bool(self.path.strip()), "path", "must name a file prefix or a TSV file")
        check(
            self.format in FORMATS,
            "format",
            f"must be one of {', '.join(FORMATS)}, got {self.format!r}",
        )
        check_number(self.weight, "weight", ">= 0", " (0: prepared, not trained on)")


@dataclass(frozen=True)
class PrepareConfig:
    """Which corpora to prepare, how to filter and shard them, and how to mix them."""

    corpora: tuple[CorpusSpec, ...] = ()
    data_dir: str = ""  # relative corpus paths are found here (empty: the current folder)
    src_lang: str = "en"  # prefix corpora: PATH.src_lang and PATH.tgt_lang
    tgt_lang: str = "de"
    mixing: str = "weighted"  # weighted: by corpus weight; concat: every pair once an epoch
    shard_lines: int = 100_000  # input lines a shard (bounds a worker's task and a window)
    min_tokens: int = 1  # pieces a side, at least ...
    max_tokens: int = 256  # ... and at most (without EOS)
    max_ratio: float = 3.0  # longer side / shorter side, judged from 6 pieces on
    drop_identical: bool = True  # drop pairs whose two sides are the same text
    dedup: bool = True  # drop exact duplicate pairs (same pieces both sides)
    tokenizer_sentences: int = 1_000_000  # sentences sampled to train a tokenizer
    seed: int = 1234  # of that sample

    def __post_init__(self) -> None:
        names = [c.name for c in self.corpora]
        twice = sorted({n for n in names if names.count(n) > 1})
        check(not twice, "corpora", f"names must differ, {', '.join(twice)} given twice")
        check(
            self.mixing in MIXING,
            "mixing",
            f"must be one of {', '.join(MIXING)}, got {self.mixing!r}",
        )
        check(
            not self.corpora or any(c.weight > 0 for c in self.corpora),
            "corpora",
            "at least one corpus needs a weight > 0",
        )
        for key in ("src_lang", "tgt_lang"):
            check(
                bool(getattr(self, key)) and "/" not in getattr(self, key), key, "must be a suffix"
            )
        check(self.src_lang != self.tgt_lang, "tgt_lang", "must differ from src_lang")
        check(self.shard_lines >= 1, "shard_lines", "must be >= 1")
        check(self.max_tokens >= self.min_tokens >= 0, "max_tokens", "must be >= min_tokens >= 0")
        check_number(self.max_ratio, "max_ratio", ">= 1")
        check(self.tokenizer_sentences >= 2, "tokenizer_sentences", "must be >= 2")
        check(self.seed >= 0, "seed", "must be >= 0")


@dataclass(frozen=True)
class PrepareRun:
    """What `nmt-prepare --config FILE` reads: where to write, the tokenizer (a run config's
    `tokenizer` section) and what to prepare."""

    output_dir: str
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)

    def __post_init__(self) -> None:
        check(bool(self.output_dir.strip()), "output_dir", "must name a folder")


def load_prepare_run(path: str | Path, data_dir: str | None = None) -> PrepareRun:
    """A `PrepareRun` from YAML; `data_dir` replaces `prepare.data_dir`. Errors name the key."""
    raw = load_yaml(path)
    if data_dir is not None:
        section = raw.setdefault("prepare", {})
        if isinstance(section, dict):
            section["data_dir"] = data_dir
    try:
        return from_dict(PrepareRun, raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
