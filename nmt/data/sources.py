"""Parallel text read as a stream of fixed-size chunks: line-aligned files (plain or gzip)
or one tab-separated file, never whole in memory.

Lines are cleaned exactly as `nmt.data.corpus.read_lines` cleans them (the CR of CRLF endings
stripped, NUL and other control characters replaced by spaces, surrounding whitespace
removed), so a prepared corpus holds the pairs `read_parallel` would give. Every problem is
a `CorpusError` naming the file and line: invalid UTF-8, a TSV line without exactly one tab,
files of different lengths, an empty corpus, a broken gzip stream.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import BinaryIO

from nmt.data.corpus import CorpusError

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # as nmt.data.corpus replaces them

PARALLEL, TSV = "parallel", "tsv"


@dataclass(frozen=True)
class CorpusFiles:
    """The files of one corpus: (source, target) for `parallel`, (file,) for `tsv`."""

    name: str
    format: str
    files: tuple[Path, ...]


def corpus_files(
    name: str, path: str | Path, format: str, src_lang: str, tgt_lang: str
) -> CorpusFiles:
    """Resolve a corpus `path`: a prefix of `PATH.SRC_LANG` and `PATH.TGT_LANG` (each plain or
    `.gz`), or one TSV file. `format` "auto" takes paths ending in .tsv or .tsv.gz as TSV."""
    text = str(path)
    if format == "auto":
        format = TSV if text.endswith((".tsv", ".tsv.gz")) else PARALLEL
    if format == TSV:
        tsv = Path(text)
        if not tsv.is_file():
            raise CorpusError(f"{tsv}: file not found")
        return CorpusFiles(name, TSV, (tsv,))
    return CorpusFiles(name, PARALLEL, (_side(text, src_lang), _side(text, tgt_lang)))


def _side(prefix: str, lang: str) -> Path:
    plain, packed = Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")
    if plain.is_file() and packed.is_file():
        raise CorpusError(f"{plain} and {packed} both exist; keep one of them")
    if plain.is_file():
        return plain
    if packed.is_file():
        return packed
    raise CorpusError(f"{plain}: file not found (nor {packed.name})")


@dataclass
class Chunk:
    """`len(src)` consecutive cleaned pairs of a corpus, from line `first_line` (1-based)."""

    index: int
    first_line: int
    src: list[str] = field(default_factory=list)
    tgt: list[str] = field(default_factory=list)
    crlf: int = 0  # lines that ended in CRLF
    control: int = 0  # lines whose control characters became spaces

    def __len__(self) -> int:
        return len(self.src)

    def sha256(self) -> str:
        """Checksum of the cleaned pairs: the same for plain, gzip and TSV input."""
        h = hashlib.sha256()
        for s, t in zip(self.src, self.tgt, strict=True):
            h.update(f"{len(s)}:{s}\t{t}\n".encode())  # a length: a tab in `s` is no border
        return h.hexdigest()


def read_chunks(corpus: CorpusFiles, chunk_lines: int) -> Iterator[Chunk]:
    """The corpus's cleaned pairs, `chunk_lines` at a time (the last chunk may be shorter)."""
    pairs = _tsv_pairs(corpus.files[0]) if corpus.format == TSV else _parallel_pairs(*corpus.files)
    chunk = Chunk(0, 1)
    for number, src, tgt, crlf, control in pairs:
        chunk.src.append(src)
        chunk.tgt.append(tgt)
        chunk.crlf += crlf
        chunk.control += control
        if len(chunk) == chunk_lines:
            yield chunk
            chunk = Chunk(chunk.index + 1, number + 1)
    if chunk.first_line == 1 and not chunk:
        raise CorpusError(f"{corpus.files[0]}: empty corpus (no lines)")
    if chunk:
        yield chunk


def _parallel_pairs(src_path: Path, tgt_path: Path) -> Iterator[tuple[int, str, str, int, int]]:
    with ExitStack() as stack:
        src_lines = _raw_lines(stack.enter_context(_open(src_path)), src_path)
        tgt_lines = _raw_lines(stack.enter_context(_open(tgt_path)), tgt_path)
        for number, (a, b) in enumerate(zip_longest(src_lines, tgt_lines), start=1):
            if a is None or b is None:  # one file ended: count what the other one has left
                src_count = number - (a is None) + sum(1 for _ in src_lines)
                tgt_count = number - (b is None) + sum(1 for _ in tgt_lines)
                raise CorpusError(
                    f"{src_path if a is None else tgt_path}:{number}: line missing: {src_path} "
                    f"has {src_count} lines but {tgt_path} has {tgt_count} (parallel files "
                    "must be line-aligned)"
                )
            src, crlf_a, control_a = _clean(_decode(a, src_path, number))
            tgt, crlf_b, control_b = _clean(_decode(b, tgt_path, number))
            yield number, src, tgt, crlf_a + crlf_b, control_a + control_b


def _tsv_pairs(path: Path) -> Iterator[tuple[int, str, str, int, int]]:
    with _open(path) as f:
        for number, raw in enumerate(_raw_lines(f, path), start=1):
            line = _decode(raw, path, number)
            crlf = line.endswith("\r")
            if crlf:
                line = line[:-1]
            tabs = line.count("\t")
            if tabs != 1:
                raise CorpusError(
                    f"{path}:{number}: expected one tab between source and target, found {tabs}"
                )
            a, b = line.split("\t")
            src, _, control_a = _clean(a)
            tgt, _, control_b = _clean(b)
            yield number, src, tgt, int(crlf), control_a + control_b


def _open(path: Path) -> BinaryIO:
    try:
        return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a directory, expected a text file") from None


def _raw_lines(f: BinaryIO, path: Path) -> Iterator[bytes]:
    """Lines split at b"\\n" only, as `read_lines` splits them, without the newline."""
    try:
        for raw in f:
            yield raw[:-1] if raw.endswith(b"\n") else raw
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise CorpusError(f"{path}: not a valid gzip file ({e})") from None


def _decode(raw: bytes, path: Path, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{path}:{number}: invalid UTF-8 at byte {e.start} of the line "
            f"({raw[e.start : e.start + 4]!r})"
        ) from None


def _clean(line: str) -> tuple[str, int, int]:
    """The line without a trailing CR, control characters as spaces, stripped; and whether
    each of the first two happened (as 0/1)."""
    crlf = line.endswith("\r")
    if crlf:
        line = line[:-1]
    control = _CONTROL.search(line) is not None
    if control:
        line = _CONTROL.sub(" ", line)
    return line.strip(), int(crlf), int(control)
