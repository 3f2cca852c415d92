"""Length-bucketed, token-based batches, reshuffled each epoch from a seed.

An epoch's batches depend only on (seed, epoch) and the lengths, so a resumed run rebuilds
the same order and skips the batches it has already consumed. The batcher touches the corpus
only through `src_lengths`, `tgt_lengths` and `pair(i)`, which a sharded on-disk corpus can
provide as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from nmt.vocab import BOS, EOS, PAD


def make_batches(
    src_lengths: np.ndarray,
    tgt_lengths: np.ndarray,
    max_tokens: int,
    seed: int,
    epoch: int,
    bucket_batches: int = 100,
) -> list[np.ndarray]:
    """Index batches of at most `max_tokens` padded tokens (rows x longest side).

    Shuffle, sort by length inside windows of ~`bucket_batches` batches (similar lengths,
    little padding), cut into batches, shuffle the batches.
    """
    rng = np.random.default_rng([seed, epoch])
    n = len(src_lengths)
    order = rng.permutation(n)
    longest = np.maximum(src_lengths, tgt_lengths)
    mean_len = max(1.0, float(longest.mean())) if n else 1.0
    window = max(1, int(bucket_batches * max_tokens / mean_len))
    batches: list[np.ndarray] = []
    for start in range(0, n, window):
        chunk = order[start : start + window]
        chunk = chunk[np.lexsort((src_lengths[chunk], tgt_lengths[chunk]))]
        batch: list[int] = []
        width = 0
        for i in chunk:
            w = max(width, int(longest[i]))
            if batch and w * (len(batch) + 1) > max_tokens:
                batches.append(np.asarray(batch))
                batch, w = [], int(longest[i])
            batch.append(int(i))
            width = w
        if batch:
            batches.append(np.asarray(batch))
    rng.shuffle(batches)
    return batches


def collate(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, ...]:
    """Pad pairs into (src, tgt_in, tgt_out) LongTensors; tgt_in = BOS + y, tgt_out = y + EOS."""
    B = len(pairs)
    S = max(len(s) for s, _ in pairs)
    T = max(len(t) for _, t in pairs) + 1
    src = np.full((B, S), PAD, dtype=np.int64)
    tgt_in = np.full((B, T), PAD, dtype=np.int64)
    tgt_out = np.full((B, T), PAD, dtype=np.int64)
    for i, (s, t) in enumerate(pairs):
        src[i, : len(s)] = s
        tgt_in[i, 0] = BOS
        tgt_in[i, 1 : len(t) + 1] = t
        tgt_out[i, : len(t)] = t
        tgt_out[i, len(t)] = EOS
    return torch.from_numpy(src), torch.from_numpy(tgt_in), torch.from_numpy(tgt_out)


def pad_sources(seqs: list[list[int]]) -> torch.Tensor:
    """Pad source id lists (already ending with EOS) into a (B, S) LongTensor."""
    S = max(1, max((len(s) for s in seqs), default=1))
    out = torch.full((len(seqs), S), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


class BatchStream:
    """What the trainer draws from: endless collated batches of `corpus` (anything with
    `pair(i)`), whose pair indices a subclass gives by `next_indices()`, with a resumable
    position `state()`. `EpochIterator` here, `nmt.prepare.shards.ShardBatches` for shards."""

    corpus: Any

    def next_indices(self) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict[str, int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, ...]:
        return collate([self.corpus.pair(int(i)) for i in self.next_indices()])

    def skip(self, n: int = 1) -> None:
        """Pass over the next `n` batches without reading them (in a run of several
        processes, the other processes take them)."""
        for _ in range(n):
            self.next_indices()


class EpochIterator(BatchStream):
    """Endless stream of training batches with a resumable position (epoch, index)."""

    def __init__(self, corpus, max_tokens: int, seed: int, epoch: int = 0, index: int = 0):
        self.corpus, self.max_tokens, self.seed = corpus, max_tokens, seed
        self.epoch, self.index = epoch, index
        self._src_len, self._tgt_len = corpus.src_lengths, corpus.tgt_lengths
        self._batches = self._make()

    def _make(self) -> list[np.ndarray]:
        return make_batches(self._src_len, self._tgt_len, self.max_tokens, self.seed, self.epoch)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def next_indices(self) -> np.ndarray:
        """The next batch's pair indices; the position moves on (into the next epoch too)."""
        if self.index >= len(self._batches):
            self.epoch, self.index = self.epoch + 1, 0
            self._batches = self._make()
        batch = self._batches[self.index]
        self.index += 1
        return batch


def token_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Group indices, longest first, into batches of at most `max_tokens` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, batch, width = [], [], 0
    for i in order:
        w = max(width, lengths[i])
        if batch and w * (len(batch) + 1) > max_tokens:
            batches.append(batch)
            batch, w = [], lengths[i]
        batch.append(i)
        width = w
    if batch:
        batches.append(batch)
    return batches
