"""`manifest.json`: what a prepared folder holds and where it came from.

Written last by `nmt.prepare.folder.prepare`, atomically, so a folder with a manifest is complete.
It records every source file with its sha256, the tokenizer's sha256 and vocabulary size,
the filters and their counts per corpus, each shard with its sha256 and pair count, the
token dtype and the versions that made it. `load_manifest` reads it back through
`nmt.config.from_dict`, so a damaged manifest is an error naming the key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from nmt.config import ConfigError, from_dict
from nmt.prepare.shards import ShardBatches, ShardedCorpus, ShardError, ShardTable, shard_problem
from nmt.prepare.worker import FILTERS, Filters

MANIFEST = "manifest.json"
FORMAT = "nmt-prepared"
VERSION = 1


@dataclass(frozen=True)
class FilterCounts:
    """Pairs kept, and pairs removed by each filter (the first that rejects a pair)."""

    kept: int = 0
    empty: int = 0
    too_short: int = 0
    too_long: int = 0
    bad_ratio: int = 0
    identical: int = 0
    duplicate: int = 0

    @classmethod
    def of(cls, kept: int, removed: dict[str, int]) -> FilterCounts:
        return cls(kept, **{name: int(removed.get(name, 0)) for name in FILTERS})

    def __add__(self, other: FilterCounts) -> FilterCounts:
        return FilterCounts(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        return dataclasses.astuple(self)

    @property
    def total(self) -> int:
        return sum(self.astuple())

    def summary(self) -> str:
        removed = ", ".join(f"{getattr(self, name)} {name}" for name in FILTERS)
        return f"kept {self.kept} of {self.total} pairs (removed: {removed})"


@dataclass(frozen=True)
class SourceFile:
    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class CorpusInfo:
    name: str
    weight: float
    format: str  # parallel or tsv
    files: tuple[SourceFile, ...]
    lines: int
    pairs: int
    shards: int
    src_tokens: int
    tgt_tokens: int
    filtered: FilterCounts
    crlf_lines: int  # lines whose CR of a CRLF ending was stripped
    control_lines: int  # lines whose control characters were replaced by spaces


@dataclass(frozen=True)
class ShardInfo:
    file: str  # relative to the folder
    corpus: str
    index: int
    first_line: int
    lines: int
    pairs: int
    src_tokens: int
    tgt_tokens: int
    bytes: int
    sha256: str
    input_sha256: str  # of the cleaned pairs the shard was made from


@dataclass(frozen=True)
class TokenizerInfo:
    file: str  # the folder's copy, relative to it
    sha256: str
    vocab_size: int
    source: str  # the model given, or how it was trained


@dataclass(frozen=True)
class Manifest:
    format: str
    version: int
    created: str
    versions: dict[str, str]
    dtype: str  # of the token arrays: uint16 or int32
    tokenizer: TokenizerInfo
    filters: Filters
    dedup: bool
    shard_lines: int
    mixing: str
    lines: int
    pairs: int
    filtered: FilterCounts
    corpora: tuple[CorpusInfo, ...]
    shards: tuple[ShardInfo, ...]
    folder: str = ""  # where it was read from; not written

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        del data["folder"]
        return json.dumps(data, indent=1) + "\n"

    def table(self) -> ShardTable:
        names = tuple(c.name for c in self.corpora)
        return ShardTable(
            paths=tuple(Path(self.folder) / s.file for s in self.shards),
            pairs=tuple(s.pairs for s in self.shards),
            corpus=tuple(names.index(s.corpus) for s in self.shards),
            names=names,
            weights=tuple(c.weight for c in self.corpora),
            mixing=self.mixing,
            shard_lines=self.shard_lines,
            bytes=tuple(s.bytes for s in self.shards),
            sha256=tuple(s.sha256 for s in self.shards),
            vocab_size=self.tokenizer.vocab_size,
        )

    def damaged(self) -> list[tuple[ShardInfo, str]]:
        """Each shard that is missing, differs from its entry (size, sha256) or is out of
        bounds (`nmt.prepare.shards.shard_problem`), with what is wrong with it."""
        vocab, folder = self.tokenizer.vocab_size, Path(self.folder)
        found = ((s, shard_problem(folder / s.file, s.bytes, s.sha256, vocab)) for s in self.shards)
        return [(s, problem) for s, problem in found if problem]

    def corpus(self, open_shards: int = 16) -> ShardedCorpus:
        """Every prepared pair as one random-access corpus (for `nmt.data.batching`)."""
        return ShardedCorpus(self.table(), stats=self.filtered, open_shards=open_shards)

    def batches(
        self,
        max_tokens: int,
        seed: int,
        epoch: int = 0,
        window: int = 0,
        index: int = 0,
        *,
        window_shards: int = 1,
    ) -> ShardBatches:
        """Endless, weighted, resumable batches, a window of shards at a time."""
        return ShardBatches(
            self.corpus(open_shards=window_shards + 1),  # grows to a window's shards
            max_tokens,
            seed,
            epoch,
            window,
            index,
            window_shards=window_shards,
        )

    def summary(self) -> str:
        corpora = ", ".join(
            f"{c.name} {c.pairs:,} of {c.lines:,} (weight {c.weight:g})" for c in self.corpora
        )
        return (
            f"{self.filtered.summary()}; {corpora}; {len(self.shards)} shards, {self.dtype}, "
            f"tokenizer {self.tokenizer.sha256[:12]} ({self.tokenizer.vocab_size} pieces); "
            f"{self.folder}"
        )


def load_manifest(folder: str | Path) -> Manifest:
    """The manifest of a prepared folder (ShardError when there is none or it is damaged)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardError(
            f"{folder}: not prepared, or its preparation did not finish (no {MANIFEST})"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or (data.get("format"), data.get("version")) != (FORMAT, VERSION):
        raise ShardError(f"{path}: not a {FORMAT} manifest of version {VERSION}")
    try:
        manifest = from_dict(Manifest, data)
    except ConfigError as e:
        raise ShardError(f"{path}: {e}") from None
    return dataclasses.replace(manifest, folder=str(folder))
