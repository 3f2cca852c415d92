"""Writing a prepared folder's shards: stream each corpus in chunks, encode the chunks in
worker processes, drop exact duplicates in corpus order, and write every missing shard once.

Workers only encode and filter (`nmt.prepare.worker`); this process reads the input, keeps
the set of pair hashes and writes the shards, in corpus order, so the result does not
depend on the number of workers. At most `2 * workers` chunks are in flight: memory stays
bounded whatever the size of the corpus. A shard made by an earlier run is recognised by its
header (which names the checksum of its input) and only read back for its hashes.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from nmt.data.sources import CorpusFiles, read_chunks
from nmt.fileio import atomic_write_bytes, file_sha256
from nmt.outputs import ensure_folder
from nmt.prepare.manifest import FilterCounts, ShardInfo
from nmt.prepare.shards import Shard, ShardError, read_header, shard_bytes, shard_name, token_dtype
from nmt.prepare.worker import Filters, encode_chunk, encode_in_worker, init_worker
from nmt.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class PairHashes:
    """A set of 64-bit pair hashes at 8 bytes a member: sorted runs, each at least as long as
    the next (an LSM-tree layout), so a lookup is one binary search a run (log n runs) and an
    insertion costs O(log n) amortised (merging two sorted runs is linear: timsort)."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hashes), dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
            found |= run[at] == hashes
        return found

    def add(self, hashes: np.ndarray) -> None:
        """Add hashes that are distinct and not members yet."""
        if not len(hashes):
            return
        self._runs.append(np.sort(np.asarray(hashes, dtype=np.uint64)))
        while len(self._runs) > 1 and len(self._runs[-2]) <= len(self._runs[-1]):
            merged = np.concatenate([self._runs.pop(-2), self._runs.pop()])
            merged.sort(kind="stable")  # in place: two sorted runs, merged in linear time
            self._runs.append(merged)

    def first_seen(self, hashes: np.ndarray) -> np.ndarray:
        """Which hashes are new (seen neither before nor earlier in `hashes`); adds them."""
        new = np.zeros(len(hashes), dtype=bool)
        new[np.unique(hashes, return_index=True)[1]] = True
        new &= ~self.contains(hashes)
        self.add(hashes[new])
        return new


@dataclass
class Tally:
    """One corpus's totals, shard by shard."""

    lines: int = 0
    pairs: int = 0
    shards: int = 0
    src_tokens: int = 0
    tgt_tokens: int = 0
    crlf: int = 0  # lines whose CR of a CRLF ending was stripped
    control: int = 0  # lines whose control characters became spaces
    filtered: FilterCounts = field(default_factory=FilterCounts)


def write_shards(
    corpora: list[CorpusFiles],
    tok: Tokenizer,
    folder: Path,
    *,
    shard_lines: int,
    filters: Filters,
    dedup: bool,
    workers: int = 1,
) -> tuple[list[ShardInfo], list[Tally]]:
    """Write every missing shard of `corpora` into `folder`, in corpus order; describe all
    of them, and total each corpus."""
    ensure_folder(folder)
    dtype = token_dtype(tok.vocab_size)
    common = {
        "tokenizer_sha256": tok.sha256(),
        "filters": asdict(filters),
        "dedup": dedup,
        "dtype": dtype,
    }
    hashes = PairHashes() if dedup else None
    tallies = [Tally() for _ in corpora]
    shards: list[ShardInfo] = []

    def finish(c: int, header: dict[str, Any], path: Path, pending: Any) -> None:
        if pending is None:  # made by an earlier run
            shard = Shard(path)
            if hashes is not None:
                hashes.add(np.asarray(shard.hashes))
            header, size, digest = shard.header, path.stat().st_size, file_sha256(path)
        else:
            chunk = pending.get()
            if hashes is not None:
                keep = hashes.first_seen(chunk.hashes)
                duplicates = int((~keep).sum())
                chunk = chunk.select(keep)
                chunk.filtered["duplicate"] = duplicates
            data = shard_bytes({**header, "filtered": chunk.filtered}, chunk)
            atomic_write_bytes(path, data, replace=False)  # a finished shard is never rewritten
            header, size, digest = read_header(path), len(data), hashlib.sha256(data).hexdigest()
        shards.append(_info(header, f"{folder.name}/{path.name}", size, digest))
        _count(tallies[c], header)
        log.info(
            "%s: %d lines, %d pairs kept (%s)",
            path.name,
            header["lines"],
            header["pairs"],
            "made before" if pending is None else "made",
        )

    with _Encoder(workers, tok, filters, dtype) as encoder:
        queue: deque[tuple[int, dict[str, Any], Path, Any]] = deque()
        for c, corpus in enumerate(corpora):
            for chunk in read_chunks(corpus, shard_lines):
                tallies[c].crlf += chunk.crlf
                tallies[c].control += chunk.control
                header = {
                    **common,
                    "corpus": corpus.name,
                    "index": chunk.index,
                    "first_line": chunk.first_line,
                    "lines": len(chunk),
                    "input_sha256": chunk.sha256(),
                }
                path = folder / shard_name(corpus.name, chunk.index)
                made = _made_before(path, header)
                queue.append((c, header, path, None if made else encoder.submit(chunk)))
                while len(queue) > encoder.depth:
                    finish(*queue.popleft())
        while queue:
            finish(*queue.popleft())
    log.info("%d shards made, %d made before", encoder.submitted, len(shards) - encoder.submitted)
    return shards, tallies


def _made_before(path: Path, header: dict[str, Any]) -> bool:
    """Whether `path` is the finished shard `header` describes (ShardError if it is damaged
    or a shard of other input: never mixed in, never replaced)."""
    if not path.exists():
        return False
    try:
        found = read_header(path)
    except ShardError as e:
        raise ShardError(f"{e}; delete it to have it made again, or use --force") from None
    differs = sorted(k for k, v in header.items() if found.get(k) != v)
    if differs:
        raise ShardError(
            f"{path}: a shard of other input (differs in {', '.join(differs)}); "
            "use --force to start over"
        )
    return True


def _info(header: dict[str, Any], file: str, size: int, digest: str) -> ShardInfo:
    return ShardInfo(
        file=file,
        corpus=header["corpus"],
        index=header["index"],
        first_line=header["first_line"],
        lines=header["lines"],
        pairs=header["pairs"],
        src_tokens=header["src_tokens"],
        tgt_tokens=header["tgt_tokens"],
        bytes=size,
        sha256=digest,
        input_sha256=header["input_sha256"],
    )


def _count(t: Tally, header: dict[str, Any]) -> None:
    t.lines += header["lines"]
    t.pairs += header["pairs"]
    t.shards += 1
    t.src_tokens += header["src_tokens"]
    t.tgt_tokens += header["tgt_tokens"]
    t.filtered += FilterCounts.of(header["pairs"], header["filtered"])


class _Done:
    """A result computed in this process, with the interface of an AsyncResult."""

    def __init__(self, value: Any):
        self.value = value

    def get(self) -> Any:
        return self.value


class _Encoder:
    """Encodes chunks in this process (one worker: each is finished as soon as submitted)
    or in `workers` spawned processes, at most `depth` chunks in flight."""

    def __init__(self, workers: int, tok: Tokenizer, filters: Filters, dtype: str):
        self.workers, self.filters, self.dtype = workers, filters, dtype
        self.depth = 0 if workers == 1 else 2 * workers
        self.submitted = 0
        self._proto = tok.model_proto
        self._pool = None
        self._processor = None

    def __enter__(self) -> _Encoder:
        if self.workers == 1:
            self._processor = spm.SentencePieceProcessor(model_proto=self._proto)
        else:
            context = multiprocessing.get_context("spawn")  # no forked copies of threads
            args = (self._proto, self.filters, self.dtype)
            self._pool = context.Pool(self.workers, init_worker, args)
        return self

    def submit(self, chunk) -> Any:
        self.submitted += 1
        if self._pool is None:
            return _Done(
                encode_chunk(self._processor, chunk.src, chunk.tgt, self.filters, self.dtype)
            )
        return self._pool.apply_async(encode_in_worker, (chunk.src, chunk.tgt))

    def __exit__(self, kind, *rest: object) -> None:
        if self._pool is not None:
            if kind is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()
