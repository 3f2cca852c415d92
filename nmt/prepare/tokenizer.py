"""The tokenizer of a prepared folder: the one given, or one trained on a seeded, weighted
reservoir sample of the corpora (`sample_sentences`), streamed, never held whole."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from nmt.config import TokenizerConfig
from nmt.data.corpus import CorpusError
from nmt.data.sources import CorpusFiles, read_chunks
from nmt.prepare.config import PrepareConfig
from nmt.tokenizer import Tokenizer, train_tokenizer

log = logging.getLogger(__name__)


def load_tokenizer(tokenizer: Tokenizer | str | Path) -> Tokenizer:
    return tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.from_file(tokenizer)


def folder_tokenizer(
    tokenizer: Tokenizer | TokenizerConfig | str | Path,
    config: PrepareConfig,
    corpora: list[CorpusFiles],
    tokenizer_file: Path,
    reuse: bool,
) -> tuple[Tokenizer, str]:
    """The tokenizer and where it came from; one trained before for the same sources at
    `tokenizer_file` is reused (`reuse`), else one is trained there on a sample of the
    corpora."""
    if not isinstance(tokenizer, TokenizerConfig):
        tok = load_tokenizer(tokenizer)
        return tok, tok.source
    if tokenizer.model:
        return Tokenizer.from_file(tokenizer.model), tokenizer.model
    local = tokenizer_file
    origin = (
        f"trained here ({tokenizer.type}, {tokenizer.vocab_size} pieces) on "
        f"{config.tokenizer_sentences} sentences sampled from the corpora (seed {config.seed})"
    )
    if reuse and local.is_file():
        return Tokenizer.from_file(local), origin
    lines = sample_sentences(config, corpora)
    if not any(lines):
        raise CorpusError(f"{corpora[0].files[0]}: every sampled line is blank")
    try:
        return train_tokenizer(lines, tokenizer, local), origin
    except RuntimeError as e:  # SentencePiece's own checks
        raise CorpusError(f"{corpora[0].files[0]}: cannot train the tokenizer ({e})") from None


def sample_sentences(config: PrepareConfig, corpora: list[CorpusFiles]) -> list[str]:
    """`tokenizer_sentences` sentences (both sides of half as many pairs), reservoir-sampled
    with `seed` while streaming: with `weighted` mixing each corpus gives the share of its
    weight (or all it has, if fewer), with `concat` one sample is drawn from all pairs."""
    pairs_wanted = config.tokenizer_sentences // 2
    if config.mixing == "weighted":
        total = sum(s.weight for s in config.corpora)
        quotas = [round(pairs_wanted * s.weight / total) for s in config.corpora]
        groups = [[c] for c in corpora]
    else:
        quotas, groups = [pairs_wanted], [corpora]
    sentences: list[str] = []
    for quota, group in zip(quotas, groups, strict=True):
        rng = random.Random(f"{config.seed}/{'+'.join(c.name for c in group)}")
        sample: list[tuple[str, str]] = []
        seen = 0
        for corpus in group if quota else ():
            for chunk in read_chunks(corpus, config.shard_lines):
                for pair in zip(chunk.src, chunk.tgt, strict=True):  # Algorithm R
                    seen += 1
                    if len(sample) < quota:
                        sample.append(pair)
                    elif (j := rng.randrange(seen)) < quota:
                        sample[j] = pair
        sentences += [side for pair in sample for side in pair]
    log.info("sampled %d sentences to train the tokenizer", len(sentences))
    return sentences
