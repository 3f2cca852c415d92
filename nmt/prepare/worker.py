"""The work of nmt-prepare's worker processes: encode a chunk of cleaned pairs with
SentencePiece, filter it, and hash the pairs kept.

This module imports neither torch nor the trainer, so a spawned worker starts in a fraction
of a second. The filters are `nmt.data.corpus.encode_parallel`'s, in its order, plus `identical`
(source and target the same text); a rejected pair is counted under the first filter that
rejects it. `duplicate` is decided later, in corpus order, by the parent process, which
alone sees every shard (`nmt.prepare.folder.PairHashes`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import chain

import numpy as np
import sentencepiece as spm

from nmt.vocab import EOS

FILTERS = ("empty", "too_short", "too_long", "bad_ratio", "identical", "duplicate")
RATIO_MIN_TOKENS = 6  # the length ratio is judged when the longer side has this many pieces
ENCODE_LINES = 10_000  # lines encoded at a time (bounds a worker's memory, not the shard)


@dataclass(frozen=True)
class Filters:
    """Which pairs an encoded chunk keeps (lengths in SentencePiece pieces, without EOS)."""

    min_tokens: int
    max_tokens: int
    max_ratio: float
    drop_identical: bool


@dataclass
class EncodedChunk:
    """The kept pairs of a chunk as flat token arrays: pair i's source is
    `src_tokens[src_offsets[i]:src_offsets[i + 1]]` (ending with EOS), its target likewise
    (without BOS/EOS); `hashes[i]` identifies the pair (64 bits of BLAKE2b of its tokens)."""

    src_offsets: np.ndarray  # int64, pairs + 1
    tgt_offsets: np.ndarray  # int64, pairs + 1
    src_tokens: np.ndarray  # uint16 or int32
    tgt_tokens: np.ndarray
    hashes: np.ndarray  # uint64, pairs
    filtered: dict[str, int]

    def __len__(self) -> int:
        return len(self.hashes)

    def select(self, keep: np.ndarray) -> EncodedChunk:
        """The pairs where the boolean mask `keep` is true, in their order."""
        src_lengths, tgt_lengths = np.diff(self.src_offsets), np.diff(self.tgt_offsets)
        return EncodedChunk(
            _offsets(src_lengths[keep]),
            _offsets(tgt_lengths[keep]),
            self.src_tokens[np.repeat(keep, src_lengths)],
            self.tgt_tokens[np.repeat(keep, tgt_lengths)],
            self.hashes[keep],
            dict(self.filtered),
        )


def encode_chunk(
    processor: spm.SentencePieceProcessor,
    src: list[str],
    tgt: list[str],
    filters: Filters,
    dtype: str,
) -> EncodedChunk:
    """Encode and filter the pairs `zip(src, tgt)` (already cleaned by `nmt.data.sources`),
    `ENCODE_LINES` at a time: SentencePiece's Python lists never hold a whole chunk."""
    filtered = dict.fromkeys(FILTERS, 0)
    parts = [
        _encode_part(
            processor, src[i : i + ENCODE_LINES], tgt[i : i + ENCODE_LINES], filters, filtered
        )
        for i in range(0, len(src), ENCODE_LINES)
    ]
    src_lengths, src_tokens, tgt_lengths, tgt_tokens = (
        np.concatenate([part[k] for part in parts]) if parts else np.zeros(0, np.int64)
        for k in range(4)
    )
    src_offsets, tgt_offsets = _offsets(src_lengths), _offsets(tgt_lengths)
    src_tokens, tgt_tokens = src_tokens.astype(dtype), tgt_tokens.astype(dtype)
    hashes = pair_hashes(src_offsets, src_tokens, tgt_offsets, tgt_tokens)
    return EncodedChunk(src_offsets, tgt_offsets, src_tokens, tgt_tokens, hashes, filtered)


def _encode_part(
    processor: spm.SentencePieceProcessor,
    src: list[str],
    tgt: list[str],
    filters: Filters,
    filtered: dict[str, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kept pairs' source lengths (with EOS) and tokens, target lengths and tokens."""
    src_ids, tgt_ids = processor.encode(src), processor.encode(tgt)
    kept_src: list[list[int]] = []
    kept_tgt: list[list[int]] = []
    for src_text, tgt_text, s, t in zip(src, tgt, src_ids, tgt_ids, strict=True):
        reason = _rejected(src_text, tgt_text, len(s), len(t), filters)
        if reason:
            filtered[reason] += 1
        else:
            kept_src.append(s)
            kept_tgt.append(t)
    src_lengths = np.fromiter(map(len, kept_src), dtype=np.int64, count=len(kept_src))
    src_flat = np.fromiter(chain.from_iterable(kept_src), np.int64, int(src_lengths.sum()))
    src_tokens = np.insert(src_flat, np.cumsum(src_lengths), EOS)
    tgt_lengths = np.fromiter(map(len, kept_tgt), dtype=np.int64, count=len(kept_tgt))
    tgt_tokens = np.fromiter(chain.from_iterable(kept_tgt), np.int64, int(tgt_lengths.sum()))
    return src_lengths + 1, src_tokens, tgt_lengths, tgt_tokens


def _rejected(src: str, tgt: str, ls: int, lt: int, f: Filters) -> str | None:
    if ls == 0 or lt == 0:
        return "empty"
    if min(ls, lt) < f.min_tokens:
        return "too_short"
    if max(ls, lt) > f.max_tokens:
        return "too_long"
    if max(ls, lt) / min(ls, lt) > f.max_ratio and max(ls, lt) >= RATIO_MIN_TOKENS:
        return "bad_ratio"
    if f.drop_identical and src == tgt:
        return "identical"
    return None


def pair_hashes(
    src_offsets: np.ndarray, src_tokens: np.ndarray, tgt_offsets: np.ndarray, tgt_tokens: np.ndarray
) -> np.ndarray:
    """64-bit BLAKE2b of each pair's stored tokens. A source ends with its only EOS, so the
    concatenation of source and target tells every pair apart."""
    src_bytes, tgt_bytes = src_tokens.tobytes(), tgt_tokens.tobytes()
    size = src_tokens.itemsize
    digests = b"".join(
        hashlib.blake2b(
            src_bytes[a * size : b * size] + tgt_bytes[c * size : d * size], digest_size=8
        ).digest()
        for a, b, c, d in zip(
            src_offsets[:-1].tolist(),
            src_offsets[1:].tolist(),
            tgt_offsets[:-1].tolist(),
            tgt_offsets[1:].tolist(),
            strict=True,
        )
    )
    return np.frombuffer(digests, dtype="<u8").copy()


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


# --- in a worker process ---------------------------------------------------------------------

_worker: tuple[spm.SentencePieceProcessor, Filters, str] | None = None


def init_worker(model_proto: bytes, filters: Filters, dtype: str) -> None:
    global _worker
    _worker = (spm.SentencePieceProcessor(model_proto=model_proto), filters, dtype)


def encode_in_worker(src: list[str], tgt: list[str]) -> EncodedChunk:
    processor, filters, dtype = _worker
    return encode_chunk(processor, src, tgt, filters, dtype)
