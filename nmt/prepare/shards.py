"""Prepared corpora on disk: binarized shards read through memory maps, as one random-access
corpus (`ShardedCorpus`) or as an endless, resumable stream of batches built one window of
shards at a time (`ShardBatches`), with corpora mixed by weight.

One shard file (`shards/CORPUS.NNNNN.shard`) holds the kept pairs of a fixed number of input
lines. The layout follows fairseq's `MMapIndexedDataset` (a flat token array plus an int64
offsets index, read with `np.memmap`, tokens as uint16 when the vocabulary fits), but
puts both sides and a self-describing header into one file, so that one atomic rename
publishes a shard whole. Little-endian throughout; every array starts on 8 bytes:

    b"NMTSHARD"                   magic, 8 bytes
    H                             uint64: length of the header
    header                        H bytes of JSON (space-padded): corpus, index, first_line,
                                  lines, input_sha256, tokenizer_sha256, filters, dtype,
                                  pairs, src_tokens, tgt_tokens, filtered (counts)
    src_offsets                   int64[pairs + 1]; pair i's source is
                                  src_tokens[src_offsets[i] : src_offsets[i + 1]]
    tgt_offsets                   int64[pairs + 1]
    hashes                        uint64[pairs]: 64-bit BLAKE2b of each pair's tokens
    src_tokens                    dtype[src_tokens]: sources, each ending with EOS
    tgt_tokens                    dtype[tgt_tokens]: targets, without BOS/EOS

Offsets count tokens (fairseq's pointers count bytes) and start at 0 in every shard. The
header depends only on the shard's input (its cleaned pairs' checksum), the tokenizer and
the filters, so plain, gzip and TSV copies of a corpus give byte-identical shards.

Trust: a reader given the shards' sha256 and the vocabulary size (`ShardTable`, from the
manifest) checks each shard the first time it maps it: its sha256 (once per reader: ~1.5
GB/s with SHA-NI), then its offsets (from 0, non-decreasing, ending at the token count) and
token ids (in the vocabulary), so a damaged shard is one line naming it, never silent
garbage or an IndexError deep in the model.

Memory: the readers hold per-shard tables and at most `open_shards` memory maps, never a
Python object per pair. `ShardedCorpus.src_lengths` builds the whole corpus's lengths (16
bytes a pair, what `nmt.data.batching.EpochIterator` needs); `ShardBatches` only ever holds the
lengths of its current window.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nmt.data.batching import BatchStream, make_batches
from nmt.data.corpus import CorpusError
from nmt.fileio import file_sha256
from nmt.prepare.worker import EncodedChunk

MAGIC = b"NMTSHARD"
FORMAT = "nmt-shard"
VERSION = 1
SUFFIX = ".shard"
DTYPES = {"uint16": "<u2", "int32": "<i4"}


class ShardError(CorpusError):
    """A shard file is missing, truncated, of another format version, or not a shard."""


def token_dtype(vocab_size: int) -> str:
    """uint16 when every id fits in 16 bits, else int32."""
    return "uint16" if vocab_size <= 2**16 else "int32"


def shard_name(corpus: str, index: int) -> str:
    return f"{corpus}.{index:05d}{SUFFIX}"


def shard_problem(path: Path, size: int, sha256: str, vocab_size: int) -> str | None:
    """What is wrong with the shard file at `path` against its manifest entry: missing,
    another size or sha256, or (a manifest edited to match) offsets or token ids out of
    bounds. None: it is that file, and sound."""
    if not path.is_file():
        return "missing"
    found = path.stat().st_size
    if found != size:
        return f"damaged ({found} bytes, the manifest says {size})"
    digest = file_sha256(path)
    if digest != sha256:
        return f"damaged (sha256 {digest[:12]}, the manifest says {sha256[:12]})"
    try:
        return Shard(path).problem(vocab_size)
    except ShardError as e:
        return f"damaged ({str(e).removeprefix(f'{path}: ')})"


def damaged(path: Path, problem: str) -> ShardError:
    """The one-line error for a damaged shard of a prepared folder, with what to run."""
    return ShardError(
        f"{path}: {problem}; run nmt-prepare again with the config that made "
        f"{path.parent.parent} to re-make it"
    )


# --- one shard file ----------------------------------------------------------------------------


def shard_bytes(header: dict[str, Any], chunk: EncodedChunk) -> bytes:
    """The file of one shard: `header` (JSON-able facts about it) plus the chunk's arrays."""
    dtype = DTYPES[header["dtype"]]
    header = {
        **header,
        "format": FORMAT,
        "version": VERSION,
        "pairs": len(chunk),
        "src_tokens": len(chunk.src_tokens),
        "tgt_tokens": len(chunk.tgt_tokens),
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-(len(MAGIC) + 8 + len(text)) % 8)
    parts = [MAGIC, len(text).to_bytes(8, "little"), text]
    for array, kind in (
        (chunk.src_offsets, "<i8"),
        (chunk.tgt_offsets, "<i8"),
        (chunk.hashes, "<u8"),
        (chunk.src_tokens, dtype),
        (chunk.tgt_tokens, dtype),
    ):
        data = np.ascontiguousarray(array, dtype=kind).tobytes()
        parts += [data, b"\0" * (-len(data) % 8)]
    return b"".join(parts)


def read_header(path: str | Path) -> dict[str, Any]:
    """A shard's JSON header (ShardError if the file is not a shard of this version)."""
    return _read_header(Path(path))[0]


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The header and where the arrays start."""
    try:
        with open(path, "rb") as f:
            start = f.read(16)
            if len(start) < 16 or start[:8] != MAGIC:
                raise ShardError(f"{path}: not a shard file (no {MAGIC.decode()} magic)")
            length = int.from_bytes(start[8:], "little")
            header = json.loads(f.read(length))
    except FileNotFoundError:
        raise ShardError(f"{path}: shard file missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ShardError(f"{path}: shard header is not valid JSON") from None
    if not isinstance(header, dict) or (header.get("format"), header.get("version")) != (
        FORMAT,
        VERSION,
    ):
        found = header.get("version") if isinstance(header, dict) else None
        raise ShardError(
            f"{path}: not a {FORMAT} file of version {VERSION} (version {found}); "
            "prepare the data again"
        )
    return header, 16 + length


def _layout(header: dict[str, Any], start: int) -> tuple[dict[str, tuple[int, str, int]], int]:
    """Where each array starts: name -> (byte offset, dtype, items); and the file's size."""
    pairs, dtype = header["pairs"], DTYPES[header["dtype"]]
    arrays = {}
    for name, kind, count in (
        ("src_offsets", "<i8", pairs + 1),
        ("tgt_offsets", "<i8", pairs + 1),
        ("hashes", "<u8", pairs),
        ("src_tokens", dtype, header["src_tokens"]),
        ("tgt_tokens", dtype, header["tgt_tokens"]),
    ):
        arrays[name] = (start, kind, count)
        start += count * np.dtype(kind).itemsize
        start += -start % 8
    return arrays, start


class Shard:
    """One shard file, memory-mapped: its header and read-only views of its arrays."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.header, start = _read_header(self.path)
        arrays, size = _layout(self.header, start)
        if self.path.stat().st_size != size:
            raise ShardError(
                f"{self.path}: {self.path.stat().st_size} bytes, expected {size} (truncated?)"
            )
        data = np.memmap(self.path, dtype=np.uint8, mode="r")

        def array(name: str) -> np.ndarray:  # a plain ndarray over the map: fast to slice
            offset, kind, count = arrays[name]
            return np.frombuffer(data, dtype=kind, count=count, offset=offset)

        self.src_offsets, self.tgt_offsets = array("src_offsets"), array("tgt_offsets")
        self.hashes = array("hashes")
        self.src_tokens, self.tgt_tokens = array("src_tokens"), array("tgt_tokens")

    def __len__(self) -> int:
        return self.header["pairs"]

    def lengths(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Source lengths (with EOS) and target lengths (+1 for the BOS/EOS the trainer adds)
        of pairs start..stop, as `EncodedCorpus` counts them."""
        stop = len(self) if stop is None else stop
        src = np.diff(self.src_offsets[start : stop + 1])
        tgt = np.diff(self.tgt_offsets[start : stop + 1]) + 1
        return src, tgt

    def problem(self, vocab_size: int) -> str | None:
        """What is out of bounds (None: nothing): offsets that do not index the token
        arrays, or token ids outside the vocabulary (`vocab_size` 0: not checked)."""
        for side in ("src", "tgt"):
            offsets, tokens = getattr(self, f"{side}_offsets"), getattr(self, f"{side}_tokens")
            problem = _bounds(offsets, tokens, vocab_size)
            if problem:
                return f"damaged ({side} {problem})"
        return None

    def pair(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair `row` as int32 copies: (source ending with EOS, target without BOS/EOS)."""
        a, b = self.src_offsets[row : row + 2]
        c, d = self.tgt_offsets[row : row + 2]
        return self.src_tokens[a:b].astype(np.int32), self.tgt_tokens[c:d].astype(np.int32)


def _bounds(offsets: np.ndarray, tokens: np.ndarray, vocab_size: int) -> str | None:
    """What is out of bounds in one side's offsets and tokens (None: nothing)."""
    if offsets[0] != 0 or offsets[-1] != len(tokens):
        return f"offsets run {offsets[0]}..{offsets[-1]}, not 0..{len(tokens)}"
    if (np.diff(offsets) < 0).any():
        return f"offsets decrease at pair {int(np.argmax(np.diff(offsets) < 0))}"
    if len(tokens) and vocab_size:
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= vocab_size:
            return f"token ids {low}..{high}, vocabulary 0..{vocab_size - 1}"
    return None


# --- the shards of a prepared folder ----------------------------------------------------------


@dataclass(frozen=True)
class ShardTable:
    """What the readers need to know of a prepared folder, one entry per shard (in corpus
    order) and per corpus; `nmt.prepare.manifest.Manifest.table()` makes it."""

    paths: tuple[Path, ...]
    pairs: tuple[int, ...]  # kept pairs of each shard
    corpus: tuple[int, ...]  # each shard's corpus, an index into `names`
    names: tuple[str, ...]  # corpus names
    weights: tuple[float, ...]  # corpus weights (0: not trained on)
    mixing: str = "weighted"  # weighted or concat (see ShardBatches)
    shard_lines: int = 100_000  # input lines a shard (a weighted window's size unit)
    bytes: tuple[int, ...] = ()  # each shard's size and sha256 (empty: not checked)
    sha256: tuple[str, ...] = ()
    vocab_size: int = 0  # token ids must be below it (0: not checked)


class ShardCache:
    """The last `size` shards used, memory-mapped; older ones are unmapped. A shard is
    checked (`table.sha256`, offsets, `table.vocab_size`) the first time it is mapped."""

    def __init__(self, table: ShardTable, size: int = 16):
        self.table, self.paths, self.size = table, table.paths, max(1, size)
        self._open: OrderedDict[int, Shard] = OrderedDict()
        self._checked: set[int] = set()  # mapped again later: not hashed again

    def __getitem__(self, index: int) -> Shard:
        shard = self._open.pop(index, None) or self._map(index)
        self._open[index] = shard
        while len(self._open) > self.size:
            self._open.popitem(last=False)
        return shard

    def _map(self, index: int) -> Shard:
        path, t = self.paths[index], self.table
        if index not in self._checked:
            if t.sha256:
                problem = shard_problem(path, t.bytes[index], t.sha256[index], t.vocab_size)
            else:
                problem = Shard(path).problem(t.vocab_size)
            if problem:
                raise damaged(path, problem)
            self._checked.add(index)
        return Shard(path)


class ShardedCorpus:
    """Every shard of a prepared folder as one corpus, pairs numbered in shard order: the
    interface of `nmt.data.corpus.EncodedCorpus` (`src_lengths`, `tgt_lengths`, `pair(i)`,
    `stats`), so `nmt.data.batching` works on it unchanged. Weights play no part here (see
    `ShardBatches`)."""

    def __init__(self, table: ShardTable, stats: Any = None, open_shards: int = 16):
        self.table, self.stats = table, stats
        self.starts = np.zeros(len(table.pairs) + 1, dtype=np.int64)  # first pair of each shard
        np.cumsum(table.pairs, out=self.starts[1:])
        self._starts = self.starts.tolist()  # for bisect: one int a shard
        self.shards = ShardCache(table, open_shards)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def src_lengths(self) -> np.ndarray:
        return self._lengths(0)

    @property
    def tgt_lengths(self) -> np.ndarray:
        return self._lengths(1)

    def _lengths(self, side: int) -> np.ndarray:
        parts = [self.shards[i].lengths()[side] for i in range(len(self.table.paths))]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        shard = bisect.bisect_right(self._starts, i) - 1
        return self.shards[shard].pair(i - self._starts[shard])

    def corpus_of(self, indices: np.ndarray) -> np.ndarray:
        """The corpus index (into `table.names`) of each pair number."""
        shards = np.searchsorted(self.starts, indices, side="right") - 1
        return np.asarray(self.table.corpus, dtype=np.int64)[shards]


# --- batches, one window at a time ------------------------------------------------------------


class ShardBatches(BatchStream):
    """Endless token-bucketed batches over a `ShardedCorpus`, built one window at a time
    from the lengths of that window's pairs only, with a resumable position.

    `concat` mixing, or a single corpus of positive weight: epoch e visits every shard of
    the corpora of positive weight once, in a permutation seeded by (seed, e); a window is
    `window_shards` consecutive shards of it.

    `weighted` mixing (several corpora): each corpus is an endless stream of its pairs (pass
    p over its shards in a permutation seeded by (seed, corpus, p), rows in shard order).
    Window g takes the next `floor((g + 1) * W * w) - floor(g * W * w)` pairs of each
    corpus's stream, where w is the corpus's weight over the sum of weights and
    W = `window_shards * shard_lines`: in every window, and so over any stretch of
    training, the share of the examples drawn from a corpus is its normalised weight
    (Multi30k 0.7 + Tatoeba 0.3: 70% and 30% of the examples, whatever their sizes; a small
    corpus is repeated, a large one is not exhausted). An epoch is `ceil(pairs / W)` windows,
    as many examples as the corpora of positive weight hold together.

    Either way the pairs of a window are batched by `nmt.data.batching.make_batches` (shuffled,
    length-bucketed, batches shuffled) with a seed drawn from (seed, epoch, window).
    `state()` is {epoch, window, index}: the same numbers given back to the constructor
    continue with exactly the batches an uninterrupted iterator would have given.
    """

    def __init__(
        self,
        corpus: ShardedCorpus,
        max_tokens: int,
        seed: int,
        epoch: int = 0,
        window: int = 0,
        index: int = 0,
        *,
        window_shards: int = 1,
    ):
        if window_shards < 1 or max_tokens < 1:
            raise ValueError("window_shards and max_tokens must be >= 1")
        table = corpus.table
        self.corpus, self.max_tokens, self.seed = corpus, max_tokens, seed
        self.window_shards = window_shards
        self._pairs = np.asarray(table.pairs, dtype=np.int64)
        shard_corpus = np.asarray(table.corpus, dtype=np.int64)
        active = [c for c, w in enumerate(table.weights) if w > 0]
        self._shards_of = {c: np.flatnonzero(shard_corpus == c) for c in active}
        sizes = {c: int(self._pairs[s].sum()) for c, s in self._shards_of.items()}
        if not sum(sizes.values()):
            raise ShardError("no pairs to train on: every corpus of positive weight is empty")
        self.weighted = table.mixing == "weighted" and len(active) > 1
        if self.weighted:
            for c in active:
                if not sizes[c]:
                    raise ShardError(
                        f"corpus {table.names[c]!r} has weight {table.weights[c]} but no pairs"
                    )
            total = sum(table.weights[c] for c in active)
            self._shares = {c: table.weights[c] / total for c in active}
            self._sizes = sizes
            self._window_pairs = window_shards * table.shard_lines
            self.windows_per_epoch = math.ceil(sum(sizes.values()) / self._window_pairs)
            self._passes: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        else:
            self._active = np.sort(np.concatenate(list(self._shards_of.values())))
            self.windows_per_epoch = math.ceil(len(self._active) / window_shards)
        self.epoch, self.window, self.index = epoch, window, index
        self._batches = self._make()

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "window": self.window, "index": self.index}

    def next_indices(self) -> np.ndarray:
        """The pair numbers (in the corpus) of the next batch."""
        while self.index >= len(self._batches):  # a window of empty shards has no batch
            self.window, self.index = self.window + 1, 0
            if self.window >= self.windows_per_epoch:
                self.epoch, self.window = self.epoch + 1, 0
            self._batches = self._make()
        batch = self._batches[self.index]
        self.index += 1
        return batch

    def _make(self) -> list[np.ndarray]:
        spans = self._weighted_spans() if self.weighted else self._concat_spans()
        cache = self.corpus.shards  # keep the window's shards mapped while its pairs are read
        cache.size = max(cache.size, len({shard for shard, _, _ in spans}))
        src, tgt, ids = [], [], []
        for shard, start, stop in spans:
            s, t = self.corpus.shards[shard].lengths(start, stop)
            src.append(s)
            tgt.append(t)
            ids.append(np.arange(start, stop, dtype=np.int64) + self.corpus.starts[shard])
        if not ids:
            return []
        src_lengths, tgt_lengths, ids = map(np.concatenate, (src, tgt, ids))
        seed = int(
            np.random.SeedSequence([self.seed, 2, self.epoch, self.window]).generate_state(1)[0]
        )
        batches = make_batches(src_lengths, tgt_lengths, self.max_tokens, seed, 0)
        return [ids[b] for b in batches]

    def _concat_spans(self) -> list[tuple[int, int, int]]:
        order = np.random.default_rng([self.seed, 0, self.epoch]).permutation(self._active)
        chosen = order[self.window * self.window_shards : (self.window + 1) * self.window_shards]
        return [(int(s), 0, int(self._pairs[s])) for s in chosen]

    def _weighted_spans(self) -> list[tuple[int, int, int]]:
        g = self.epoch * self.windows_per_epoch + self.window
        spans = []
        for c, share in self._shares.items():
            start = math.floor(g * self._window_pairs * share)
            stop = math.floor((g + 1) * self._window_pairs * share)
            spans += self._stream(c, start, stop)
        return spans

    def _stream(self, c: int, start: int, stop: int) -> list[tuple[int, int, int]]:
        """Positions start..stop of corpus c's endless stream, as (shard, row, row) spans."""
        spans = []
        while start < stop:
            p, offset = divmod(start, self._sizes[c])
            order, ends = self._pass(c, p)
            j = int(np.searchsorted(ends, offset, side="right"))  # skips empty shards
            shard = int(order[j])
            row = offset - int(ends[j] - self._pairs[shard])
            take = min(stop - start, int(self._pairs[shard]) - row)
            spans.append((shard, row, row + take))
            start += take
        return spans

    def _pass(self, c: int, p: int) -> tuple[np.ndarray, np.ndarray]:
        """Corpus c's shards in the order of its pass p, and where each ends in the pass."""
        cached = self._passes.get(c)
        if cached is None or cached[0] != p:
            rng = np.random.default_rng([self.seed, 1, c, p])
            order = rng.permutation(self._shards_of[c])
            cached = (p, order, np.cumsum(self._pairs[order]))
            self._passes[c] = cached
        return cached[1], cached[2]
