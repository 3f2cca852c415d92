"""What every translator offers (`Translator`), and the one implementation of it over
`nmt.search` (`SearchTranslator`) that the PyTorch, ensemble and ONNX backends share.

A backend is a module of `nmt.backends` with a translator class and a loader registered in
`nmt.translate.BACKENDS`: `pytorch` (a run folder, checkpoint or weights folder; several of
one tokenizer make an ensemble), `ct2` (a CTranslate2 export, its own decoder) and `onnx`
(ONNX Runtime graphs behind `Transformer`'s decoding interface, so `nmt.search` decodes).
Output is always line-aligned with input: an empty or whitespace-only line translates to an
empty line without reaching the model; an over-long line is truncated with a warning.
Every translator cuts runs of one character in its output text to `max_char_repeat`
(`cap_char_runs`), the one guard against loops that works on text rather than tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from nmt.data.batching import pad_sources, token_batches
from nmt.decoding import Decoding, check_nbest, decoding_of
from nmt.inputs import encode_nonblank
from nmt.model import Transformer
from nmt.search import nbest_search, search
from nmt.tokenizer import Tokenizer
from nmt.vocab import EOS


class Translator(Protocol):
    """A loaded model: `translate(lines, decoding)` takes an `nmt.decoding.Decoding` (or any
    of its fields as keyword options, `translate(lines, beam_size=4)`) and returns one output
    line per input line; `backend` names the engine, `source` the loaded file."""

    backend: str
    source: str
    tokenizer: Tokenizer

    def translate(
        self, lines: list[str], decoding: Decoding | None = None, **options: object
    ) -> list[str]: ...

    def translate_nbest(
        self, lines: list[str], n: int, decoding: Decoding | None = None, **options: object
    ) -> list[list[Hypothesis]]: ...


@dataclass(frozen=True)
class Hypothesis:
    """One of a line's n best translations: its text and its score, the sum of its tokens'
    log-probabilities (EOS included) divided by length ** length_penalty, as the beam
    search ranks it (a blank line: "" scored 0)."""

    text: str
    score: float


def cap_char_runs(text: str, limit: int) -> str:
    """`text` with every run of one character other than a digit longer than `limit` cut
    to `limit` characters (0: unchanged): "Aussssssss" with limit 3 is "Ausss".

    A cleanup of the decoded text rather than a ban in the search: it is exact for every
    backend alike (CTranslate2 takes no per-token rule from outside, and a ban on tokens
    would need each piece's characters at every step) and costs one regular expression per
    line. Digits are left alone: a run of them is a number (1000000), which cutting would
    silently change, and a number that loops is wrong whether cut or not."""
    if limit == 0:
        return text
    return re.sub(rf"(\D)\1{{{limit},}}", lambda m: m[1] * limit, text)


class SearchTranslator:
    """Text in, text out over a model with `Transformer`'s decoding interface (`config`,
    `init_state`, `decode_step`): a PyTorch model, an ensemble, or ONNX Runtime graphs
    behind that interface; decoding is `nmt.search`'s, the same for all of them. A subclass
    sets `model`, `tokenizer`, `max_input` (source tokens, EOS included) and `input_device`
    (where the source batches go)."""

    backend = ""
    model: Transformer
    tokenizer: Tokenizer
    max_input: int
    input_device: torch.device = torch.device("cpu")

    def translate(
        self, lines: list[str], decoding: Decoding | None = None, **options: object
    ) -> list[str]:
        """Translate `lines` under `decoding` (any of its fields may be given as keyword
        `options` instead); empty or whitespace-only lines give "" without reaching the
        model."""
        opts = decoding_of(decoding, **options)  # a ConfigError before any work
        outputs = [""] * len(lines)
        for k, src in self._batches(lines, opts):
            for j, text in zip(
                k, self.tokenizer.decode(search(self.model, src, opts)), strict=True
            ):
                outputs[j] = cap_char_runs(text, opts.max_char_repeat)
        return outputs

    def translate_nbest(
        self, lines: list[str], n: int, decoding: Decoding | None = None, **options: object
    ) -> list[list[Hypothesis]]:
        """The `n` best translations of each line (at most the beam size), best first; the
        first is `translate`'s. A blank line has one, ""."""
        opts = decoding_of(decoding, **options)
        n = check_nbest(n, opts)
        outputs = [[Hypothesis("", 0.0)] for _ in lines]
        for k, src in self._batches(lines, opts):
            for j, hyps in zip(k, nbest_search(self.model, src, opts, n), strict=True):
                texts = self.tokenizer.decode([ids for _, ids in hyps])
                outputs[j] = [
                    Hypothesis(cap_char_runs(text, opts.max_char_repeat), score)
                    for text, (score, _) in zip(texts, hyps, strict=True)
                ]
        return outputs

    def _batches(self, lines: list[str], opts: Decoding) -> Iterator[tuple[list[int], Tensor]]:
        """The non-blank lines' source batches: (their indices in `lines`, padded ids)."""
        todo, ids = encode_nonblank(lines, self.tokenizer.encode, self.max_input - 1)
        ids = [seq + [EOS] for seq in ids]
        for batch in token_batches([len(s) for s in ids], opts.max_batch_tokens):
            src = pad_sources([ids[k] for k in batch]).to(self.input_device)
            yield [todo[k] for k in batch], src
