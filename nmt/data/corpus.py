"""Line-aligned parallel text: strict reading, length filtering, encoding to token ids.

Reading is strict by design: a missing or empty file, a corpus whose sides differ in line
count, or one that is not valid UTF-8 is an error naming the file and line, never silently
truncated. Carriage returns of CRLF files are stripped and NUL and other control characters
replaced by spaces, both counted in a warning. Over-long pairs are dropped by
`encode_parallel` and counted in the "train data: kept ..." log line.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmt.vocab import EOS

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class CorpusError(ValueError):
    """A corpus file is missing or malformed; the message names the file and line."""


def read_lines(path: str | Path) -> list[str]:
    """Read a UTF-8 text file, one segment a line, with file:line errors on bad bytes."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a directory, expected a text file") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out, cleaned, crlf = [], 0, 0
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorpusError(
                f"{path}:{number}: invalid UTF-8 at byte {e.start} of the line "
                f"({raw[e.start : e.start + 4]!r})"
            ) from None
        if line.endswith("\r"):
            line, crlf = line[:-1], crlf + 1
        if _CONTROL.search(line):
            line = _CONTROL.sub(" ", line)
            cleaned += 1
        out.append(line.strip())
    if crlf:
        log.warning("%s: stripped the CR of CRLF line endings on %d lines", path, crlf)
    if cleaned:
        log.warning(
            "%s: replaced control characters (NUL, ...) by spaces on %d lines", path, cleaned
        )
    return out


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> tuple[list[str], list[str]]:
    """Read two line-aligned files; their line counts must match."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        shorter = src_path if len(src) < len(tgt) else tgt_path
        raise CorpusError(
            f"{shorter}:{min(len(src), len(tgt)) + 1}: line missing: {src_path} has "
            f"{len(src)} lines but {tgt_path} has {len(tgt)} (parallel files must be "
            "line-aligned)"
        )
    if not src:
        raise CorpusError(f"{src_path}: empty corpus (no lines)")
    return src, tgt


@dataclass
class FilterStats:
    kept: int = 0
    empty: int = 0
    too_short: int = 0
    too_long: int = 0
    bad_ratio: int = 0

    @property
    def total(self) -> int:
        return self.kept + self.empty + self.too_short + self.too_long + self.bad_ratio

    def summary(self) -> str:
        return (
            f"kept {self.kept} of {self.total} pairs (removed: {self.empty} empty, "
            f"{self.too_short} too short, {self.too_long} too long, "
            f"{self.bad_ratio} bad length ratio)"
        )


@dataclass
class EncodedCorpus:
    """Token ids of a parallel corpus, ready for batching.

    Sources end with EOS; targets are stored without BOS/EOS (the trainer adds them). The
    batcher only needs `src_lengths`/`tgt_lengths` and `pair(i)`, so a sharded, memory-mapped
    corpus can stand in for this in-memory one.
    """

    src: list[np.ndarray]
    tgt: list[np.ndarray]
    stats: FilterStats = field(default_factory=FilterStats)

    def __len__(self) -> int:
        return len(self.src)

    @property
    def src_lengths(self) -> np.ndarray:
        return np.fromiter((len(s) for s in self.src), dtype=np.int64, count=len(self.src))

    @property
    def tgt_lengths(self) -> np.ndarray:
        # +1 for the BOS/EOS the trainer adds to either side of the target.
        return np.fromiter((len(t) + 1 for t in self.tgt), dtype=np.int64, count=len(self.tgt))

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.src[i], self.tgt[i]


def encode_parallel(
    src_lines: list[str],
    tgt_lines: list[str],
    tokenizer,
    *,
    min_tokens: int = 1,
    max_tokens: int = 256,
    max_ratio: float = 3.0,
) -> EncodedCorpus:
    """Encode pairs and drop those that are empty, too short/long or of a bad length ratio."""
    src_ids, tgt_ids = tokenizer.encode(src_lines), tokenizer.encode(tgt_lines)
    stats, src_out, tgt_out = FilterStats(), [], []
    for s, t in zip(src_ids, tgt_ids, strict=True):
        ls, lt = len(s), len(t)
        if ls == 0 or lt == 0:
            stats.empty += 1
        elif min(ls, lt) < min_tokens:
            stats.too_short += 1
        elif max(ls, lt) > max_tokens:
            stats.too_long += 1
        elif max(ls, lt) / min(ls, lt) > max_ratio and max(ls, lt) > 5:
            stats.bad_ratio += 1
        else:
            stats.kept += 1
            src_out.append(np.asarray(s + [EOS], dtype=np.int32))
            tgt_out.append(np.asarray(t, dtype=np.int32))
    return EncodedCorpus(src_out, tgt_out, stats)
