"""Vocabulary shortlists for CTranslate2: which target pieces a batch may produce (`vmap.txt`).

A CTranslate2 model folder may hold a vocabulary map; `translate_batch(use_vmap=True)` then
computes the output layer over a short list of target pieces instead of the whole vocabulary.
The format and semantics, as CTranslate2 4.x reads them (src/vocabulary_map.cc):

- One rule a line, `SOURCE<TAB>TARGETS`, pieces separated by single spaces. A source side
  of n pieces is an n-gram rule, matched on n consecutive source pieces; this module builds
  unigram rules only.
- The line with an empty source side lists the target pieces always allowed. CTranslate2
  adds the model's unk, bos and eos pieces itself (and pads the list with id 0); the maps
  built here list eos and unk as well, so that they do not rely on it.
- A batch may produce the always-allowed pieces plus the targets of every rule that matches
  somewhere in any of its sentences (`VocabMap.allowed`): a shortlist is per batch.
- Parser pitfalls, which `write_vmap` avoids and `read_vmap` rejects: a line without a tab
  (a blank line too) is read as a rule for the empty source and replaces the always-allowed
  list (checked with CTranslate2 4.8.5: one blank line at the end of a good file broke every
  translation of a toy model); a repeated source side replaces the earlier rule; two spaces
  in a row make an empty piece; an unknown piece silently becomes `<unk>`. CRLF line ends
  are fine.

How targets are chosen (`build_vmap`): each source piece keeps its `top_k` most likely
target pieces under a lexical translation table p(t|s), not counting the pieces that are
allowed anyway (the `frequent` most frequent target pieces and the special pieces), so the
k slots go to pieces that need a rule. Two tables are registered in `SCORERS`:

- "ibm1" (default): IBM Model 1 with a NULL source word, a few EM iterations from a uniform
  start. EM explains function words and punctuation by the words that really produce them
  (or by NULL), so a source piece's list holds its translations rather than whatever is
  frequent on the target side. Vectorised over all (source position or NULL, target
  position) pairs of the corpus: memory grows by about 35 bytes a pair (Multi30k: 7.6M
  pairs, +250 MB; 5 s on one core); for corpora of millions of sentences, build from a
  sample.
- "cooccurrence": p(t|s) = c(s, t) / c(s), counted over sentence pairs; no EM, ranks
  target pieces that are merely frequent higher than IBM-1 does.

Defaults (`TOP_K` 20, `FREQUENT` 100, no `min_prob`), chosen on Multi30k en->de with an 8k
joint SentencePiece vocabulary and a 3+3-layer model exported to CTranslate2: a 32-sentence
batch of test_2016_flickr allows ~1,570 of the 8,000 pieces (one sentence ~250); BLEU moved
by -0.04..-0.02 (greedy) and -0.01..+0.19 (beam 4) in float32 and int8, 95% of greedy
outputs unchanged, and decoding on one core got 1.3x (greedy) to 1.5x (beam 4) faster with
512-token batches. `min_prob=0.01` cut the batch's list to ~1,020 at the same BLEU (88%
of greedy outputs unchanged); 0.03 (~640) cost 0.4-0.6 BLEU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from nmt.checkpoint import RUN_CHECKPOINTS, find_checkpoint, load_checkpoint
from nmt.data.corpus import read_parallel
from nmt.outputs import claim
from nmt.tokenizer import Tokenizer
from nmt.vocab import EOS, UNK
from nmt.weights import WEIGHTS_FILE

log = logging.getLogger(__name__)

TOP_K = 20  # target pieces a source piece allows, besides the always-allowed ones
VMAP = "nmt-vmap"  # the kind of output a vmap file is (nmt.outputs)
FREQUENT = 100  # most frequent target pieces, always allowed
IBM1_ITERATIONS = 5
SPECIAL_PIECES = ("</s>", "<unk>")  # always allowed: eos must be, unk may be generated

_WHITESPACE = (" ", "\t", "\n", "\r", "\v", "\f")


class VmapError(ValueError):
    """A vocabulary map cannot be built from the input, or a vmap file is malformed."""


@dataclass(frozen=True)
class VocabMap:
    """Rules from source pieces (or space-separated n-grams) to target pieces, best first,
    and the target pieces always allowed. `info` describes how it was built."""

    always: tuple[str, ...]
    rules: Mapping[str, tuple[str, ...]]
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def allowed(self, batch: Iterable[Sequence[str]]) -> set[str]:
        """The target pieces CTranslate2 lets a batch of source-piece sequences produce
        (besides the model's own unk/bos/eos, which it always adds)."""
        out, longest = set(self.always), self.longest_source
        for pieces in batch:
            for i in range(len(pieces)):
                for n in range(1, min(longest, len(pieces) - i) + 1):
                    targets = self.rules.get(" ".join(pieces[i : i + n]))
                    if targets is not None:
                        out.update(targets)
        return out

    @cached_property
    def longest_source(self) -> int:
        """Pieces in the longest rule source (1 for the unigram maps `build_vmap` makes)."""
        return max((key.count(" ") + 1 for key in self.rules), default=0)

    def to_text(self) -> str:
        """The file CTranslate2 reads: the always-allowed line first, then one rule a line."""
        _check_pieces(self.always, "always-allowed targets")
        lines = ["\t" + " ".join(self.always)]
        for key, targets in self.rules.items():
            _check_pieces(key.split(" "), f"source {key!r} (pieces joined by single spaces)")
            _check_pieces(targets, f"targets of {key!r}")
            lines.append(f"{key}\t{' '.join(targets)}")
        return "".join(line + "\n" for line in lines)


# --- lexical translation tables ------------------------------------------------------------


@dataclass
class _Corpus:
    """A parallel corpus as integer ids: `src`/`tgt` per pair, pieces by id."""

    src: list[np.ndarray]
    tgt: list[np.ndarray]
    src_pieces: list[str]
    tgt_pieces: list[str]


# A scorer returns, for each (source id, target id) pair it scores, p(t|s).
Scorer = Callable[[_Corpus, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def ibm1_scores(corpus: _Corpus, iterations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IBM Model 1 p(t|s) (source with NULL -> target) after `iterations` EM rounds."""
    null, n_tgt = len(corpus.src_pieces), len(corpus.tgt_pieces)
    sizes = [(len(s) + 1) * len(t) for s, t in zip(corpus.src, corpus.tgt, strict=True)]
    index = np.int32 if sum(sizes) < 2**31 else np.int64
    keys = np.empty(sum(sizes), dtype=np.int64)  # source id * n_tgt + target id
    position = np.empty(sum(sizes), dtype=index)  # target position in the whole corpus
    at = offset = 0
    for s, t, size in zip(corpus.src, corpus.tgt, sizes, strict=True):
        s = np.append(s, null)
        keys[at : at + size] = (s[:, None] * n_tgt + t[None, :]).ravel()  # (ls+1, lt)
        position[at : at + size] = np.tile(np.arange(offset, offset + len(t)), len(s))
        at, offset = at + size, offset + len(t)
    pair_keys = np.unique(keys)
    pair_of = np.searchsorted(pair_keys, keys).astype(index)  # lighter than return_inverse
    del keys
    pair_src, pair_tgt = pair_keys // n_tgt, pair_keys % n_tgt
    prob = np.ones(len(pair_keys))  # uniform start
    for _ in range(iterations):
        p = prob[pair_of]
        p /= np.bincount(position, weights=p, minlength=offset)[position]  # posterior
        counts = np.bincount(pair_of, weights=p, minlength=len(pair_keys))
        del p
        totals = np.bincount(pair_src, weights=counts, minlength=null + 1)
        prob = counts / totals[pair_src]
    keep = pair_src != null
    return pair_src[keep], pair_tgt[keep], prob[keep]


def cooccurrence_scores(
    corpus: _Corpus, iterations: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """p(t|s) = (pairs with s in the source and t in the target) / (pairs with s)."""
    del iterations  # no EM
    n_tgt = len(corpus.tgt_pieces)
    keys, sources = [], []
    for s, t in zip(corpus.src, corpus.tgt, strict=True):
        s, t = np.unique(s), np.unique(t)
        keys.append((s[:, None] * n_tgt + t[None, :]).ravel())
        sources.append(s)
    pair_keys, counts = np.unique(np.concatenate(keys), return_counts=True)
    src_counts = np.bincount(np.concatenate(sources), minlength=len(corpus.src_pieces))
    pair_src, pair_tgt = pair_keys // n_tgt, pair_keys % n_tgt
    return pair_src, pair_tgt, counts / src_counts[pair_src]


SCORERS: dict[str, Scorer] = {"ibm1": ibm1_scores, "cooccurrence": cooccurrence_scores}


# --- building ------------------------------------------------------------------------------


def build_vmap(
    src_lines: Iterable[Sequence[str]],
    tgt_lines: Iterable[Sequence[str]],
    top_k: int = TOP_K,
    frequent: int = FREQUENT,
    method: str = "ibm1",
    iterations: int = IBM1_ITERATIONS,
    min_prob: float = 0.0,
    specials: Sequence[str] = SPECIAL_PIECES,
) -> VocabMap:
    """A vocabulary map from a line-aligned corpus of SentencePiece pieces.

    Always allowed: `specials` and the `frequent` most frequent target pieces. Each source
    piece gets a rule with its `top_k` most likely other target pieces under `method`'s
    p(t|s) (ties broken by first appearance), those below `min_prob` left out. Pairs with an
    empty side are skipped. Raises VmapError for misaligned sides, pieces holding
    whitespace and an empty corpus.
    """
    scorer = _scorer(method)
    if top_k < 0 or frequent < 0 or iterations < 0:
        raise VmapError(
            f"top_k, frequent and iterations must be >= 0 (got {top_k}, {frequent}, {iterations})"
        )
    start = time.perf_counter()
    corpus = _index(src_lines, tgt_lines)
    tgt_freq = np.bincount(np.concatenate(corpus.tgt), minlength=len(corpus.tgt_pieces))
    by_freq = np.lexsort((np.arange(len(tgt_freq)), -tgt_freq))[:frequent]
    always = tuple(dict.fromkeys([*specials, *(corpus.tgt_pieces[i] for i in by_freq)]))

    pair_src, pair_tgt, score = scorer(corpus, iterations)
    always_set = set(always)
    is_always = np.isin(pair_tgt, [i for i, p in enumerate(corpus.tgt_pieces) if p in always_set])
    keep = ~is_always & (score >= min_prob) & (score > 0)
    pair_src, pair_tgt, score = pair_src[keep], pair_tgt[keep], score[keep]
    order = np.lexsort((pair_tgt, -score, pair_src))  # by source, best first
    pair_src, pair_tgt = pair_src[order], pair_tgt[order]
    starts = np.searchsorted(pair_src, pair_src, side="left")
    rank = np.arange(len(pair_src)) - starts
    top = rank < top_k
    rules: dict[str, list[str]] = {}
    for s, t in zip(pair_src[top].tolist(), pair_tgt[top].tolist(), strict=True):
        rules.setdefault(corpus.src_pieces[s], []).append(corpus.tgt_pieces[t])

    seconds = time.perf_counter() - start
    info = {
        "method": method,
        "iterations": iterations if method == "ibm1" else 0,
        "top_k": top_k,
        "frequent": frequent,
        "min_prob": min_prob,
        "pairs": len(corpus.src),
        "source_pieces": len(corpus.src_pieces),
        "target_pieces": len(corpus.tgt_pieces),
        "build_seconds": round(seconds, 2),
    }
    log.info(
        "vocabulary map (%s): %d rules, %d always-allowed pieces, from %d pairs in %.1f s",
        method,
        len(rules),
        len(always),
        len(corpus.src),
        seconds,
    )
    return VocabMap(always, {k: tuple(v) for k, v in rules.items()}, info)


def build_vmap_from_files(
    src_path: str | Path,
    tgt_path: str | Path,
    tokenizer: Tokenizer,
    **options: Any,
) -> VocabMap:
    """`build_vmap` over two line-aligned text files, encoded with `tokenizer`; `options`
    go to `build_vmap`. Reading is strict (`nmt.data.corpus.read_parallel`: CorpusError naming
    the file and line). The special pieces are the tokenizer's eos and unk."""
    src, tgt = read_parallel(src_path, tgt_path)
    sp = tokenizer.sp
    options.setdefault("specials", (sp.id_to_piece(EOS), sp.id_to_piece(UNK)))
    vmap = build_vmap(tokenizer.encode_pieces(src), tokenizer.encode_pieces(tgt), **options)
    info = {
        **vmap.info,
        "src": str(src_path),
        "tgt": str(tgt_path),
        "tokenizer_sha256": tokenizer.sha256(),
        "tokenizer_vocab_size": tokenizer.vocab_size,
    }
    return VocabMap(vmap.always, vmap.rules, info)


def translation_table(
    src_lines: Iterable[Sequence[str]],
    tgt_lines: Iterable[Sequence[str]],
    method: str = "ibm1",
    iterations: int = IBM1_ITERATIONS,
) -> dict[str, dict[str, float]]:
    """p(t|s) under `method`, as {source piece: {target piece: probability}}, for inspecting
    what `build_vmap` ranks (IBM-1's NULL source is left out)."""
    scorer = _scorer(method)
    corpus = _index(src_lines, tgt_lines)
    table: dict[str, dict[str, float]] = {}
    pair_src, pair_tgt, score = scorer(corpus, iterations)
    for s, t, p in zip(pair_src.tolist(), pair_tgt.tolist(), score.tolist(), strict=True):
        table.setdefault(corpus.src_pieces[s], {})[corpus.tgt_pieces[t]] = p
    return table


def _scorer(method: str) -> Scorer:
    if method not in SCORERS:
        raise VmapError(f"unknown method {method!r} (known: {', '.join(SCORERS)})")
    return SCORERS[method]


def _index(src_lines: Iterable[Sequence[str]], tgt_lines: Iterable[Sequence[str]]) -> _Corpus:
    src_vocab: dict[str, int] = {}
    tgt_vocab: dict[str, int] = {}
    src_first: list[int] = []  # line where each piece first appears, for error messages
    tgt_first: list[int] = []
    src, tgt = [], []
    src_iter, tgt_iter = iter(src_lines), iter(tgt_lines)
    number = 0
    while True:
        s, t = next(src_iter, None), next(tgt_iter, None)
        if s is None or t is None:
            if s is not None or t is not None:
                longer = "source" if s is not None else "target"
                raise VmapError(
                    f"the sides are not line-aligned: the {longer} side is longer "
                    f"(the other ends after line {number})"
                )
            break
        number += 1
        if isinstance(s, str) or isinstance(t, str):
            raise VmapError(f"line {number}: expected a sequence of pieces, got a string")
        if not s or not t:
            continue
        src.append(_ids(s, src_vocab, src_first, number))
        tgt.append(_ids(t, tgt_vocab, tgt_first, number))
    if not src:
        raise VmapError("no sentence pair with pieces on both sides")
    for vocab, first, side in ((src_vocab, src_first, "source"), (tgt_vocab, tgt_first, "target")):
        for piece, i in vocab.items():
            if not piece or any(c in piece for c in _WHITESPACE):
                raise VmapError(
                    f"line {first[i]}: {side} piece {piece!r} is empty or holds whitespace "
                    "(a vmap separates pieces by spaces and sides by a tab)"
                )
    return _Corpus(src, tgt, list(src_vocab), list(tgt_vocab))


def _ids(pieces: Sequence[str], vocab: dict[str, int], first: list[int], line: int) -> np.ndarray:
    before = len(vocab)
    ids = [vocab.setdefault(p, len(vocab)) for p in pieces]
    first.extend([line] * (len(vocab) - before))
    return np.asarray(ids, dtype=np.int64)


# --- files ---------------------------------------------------------------------------------


def write_vmap(
    vmap: VocabMap, path: str | Path, inputs: Iterable[str | Path] = (), force: bool = False
) -> Path:
    """Write `vmap` atomically to `path` (the file CTranslate2 reads) and, when it has
    build info, `PATH.json` beside it with that info and the file's sha256. Existing files
    are replaced only with `force` and only if nmt-vmap wrote them (`nmt.outputs`); neither
    may be one of `inputs`."""
    path = Path(path)
    outputs = [claim(path, VMAP, inputs=inputs, force=force, folder=False)]
    if vmap.info:
        outputs.append(claim(info_path(path), VMAP, inputs=inputs, force=force, folder=False))
    text = vmap.to_text()
    outputs[0].write_text(text)
    if vmap.info:
        info = {**vmap.info, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
        outputs[1].write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    log.info("wrote vocabulary map (%d rules) -> %s", len(vmap.rules), path)
    return path


def info_path(path: str | Path) -> Path:
    """Where `write_vmap` puts the build info of the vmap file `path`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_vmap(path: str | Path) -> VocabMap:
    """Read a vmap file, rejecting what CTranslate2 would misread (see the module doc)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise VmapError(f"{path}: vocabulary map not found") from None
    except UnicodeDecodeError as e:
        raise VmapError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    always: tuple[str, ...] | None = None
    rules: dict[str, tuple[str, ...]] = {}
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # after the final newline
    for number, line in enumerate(lines, start=1):
        where = f"{path}:{number}"
        line = line.removesuffix("\r")  # CTranslate2 reads CRLF files too
        if line.count("\t") != 1:
            raise VmapError(f"{where}: expected one tab between source and target pieces")
        key, targets = line.split("\t")
        pieces = tuple(targets.split(" ")) if targets else ()
        try:
            _check_pieces(key.split(" ") if key else (), "source")
            _check_pieces(pieces, "targets")
        except VmapError as e:
            raise VmapError(f"{where}: {e} (pieces are separated by single spaces)") from None
        if key in rules or (key == "" and always is not None):
            raise VmapError(
                f"{where}: a second rule for source {key!r} (CTranslate2 keeps only the last)"
            )
        if key == "":
            always = pieces
        else:
            rules[key] = pieces
    return VocabMap(always or (), rules)


def _check_pieces(pieces: Sequence[str], what: str) -> None:
    for piece in pieces:
        if not piece or any(c in piece for c in _WHITESPACE):
            raise VmapError(f"{what}: piece {piece!r} is empty or holds whitespace")


# --- tokenizer lookup for the CLI ------------------------------------------------------------


def tokenizer_from(path: str | Path) -> Tokenizer:
    """The tokenizer of a SentencePiece model file, a run folder or checkpoint, or an
    export folder (its `spm.model`)."""
    path = Path(path)
    if path.is_file() and path.suffix not in (".pt", ".safetensors"):
        return Tokenizer.from_file(path)
    if path.is_dir() and (path / "spm.model").is_file() and not _has_checkpoint(path):
        return Tokenizer.from_file(path / "spm.model")  # an export folder
    ckpt = find_checkpoint(path)
    return Tokenizer(load_checkpoint(ckpt)["tokenizer_model"], f"{ckpt}:tokenizer_model")


def _has_checkpoint(path: Path) -> bool:
    return any((path / name).is_file() for name in (*RUN_CHECKPOINTS, WEIGHTS_FILE))
