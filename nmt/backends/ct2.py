"""Translate with a CTranslate2 export (see `nmt.export.ct2`), with the PyTorch backend's API.

`CT2Translator.translate` takes the same arguments as `TorchTranslator.translate` and
decodes under the same rules: source pieces plus EOS (the export appends EOS), decoding
from BOS, PAD and BOS never generated, EOS masked for the first `min_len` steps, at most
`max_len_a * source_length + max_len_b` tokens (source length counting EOS, capped at
`max_positions - 1`), over-long inputs truncated to `max_positions - 2` pieces.

The length limit: CTranslate2 takes one `max_decoding_length` per call, not a per-sentence
ratio. Greedy search needs no emulation: a sentence's first N greedy tokens do not depend
on the limit, so one call with the batch's largest limit, each output cut to its own
limit, is exact. Beam search does depend on the limit (hypotheses cut at the limit compete
with the others). By default a beam search also uses the largest limit of the call and cuts
afterwards: full batches, and the same output as PyTorch except for a sentence whose own
limit binds (rare with the default 1.5 x source + 10). `exact_length_limits=True` groups
sentences by limit and decodes each group with its own `max_decoding_length`: exactly
PyTorch's output, at the price of much smaller batches (about 3x slower beam search on
Multi30k in batches of 32).

The guards against loops: `no_repeat_ngram_size` and `repetition_penalty` are CTranslate2's
own (`nmt.search` implements them after it), `max_char_repeat` the same cleanup of the text
as the other backends' (`nmt.backends.base.cap_char_runs`).

Greedy output is identical to PyTorch's. Beam search follows CTranslate2's rules, which
differ from `nmt.search.beam_search`: masked tokens are removed before the softmax
(renormalised); at the limit all K best candidates finish, without a free EOS step, and
are normalised by their length without EOS; every EOS among the K best of a step is kept
(no cap at K); with length_penalty 0 a sentence waits for its best beam to end. See
`ct2_beam_search` in tests/test_export_ct2.py.

With `inter_threads > 1` (several translators, `threads` each), every `translate()` call is
split by tokens into one share per translator and the shares run in parallel: on a 2-core
CPU two 1-thread translators beat one 2-thread translator.

One more difference: a non-blank line whose SentencePiece encoding is empty reaches
CTranslate2 as an empty source, which it answers with an empty translation without running
the model; PyTorch decodes it from the lone EOS.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import ctranslate2
import torch

from nmt.backends.base import Hypothesis, cap_char_runs
from nmt.decoding import (
    Decoding,
    cap_threads,
    check_nbest,
    decoding_of,
    fits_in_memory,
    is_out_of_memory,
    out_of_memory,
)
from nmt.export.folder import EXPORT_INFO, TOKENIZER_FILE, ExportError, read_ct2_info
from nmt.export.folder import is_ct2_export as is_ct2_export  # the recogniser, engine-free
from nmt.inputs import encode_nonblank
from nmt.tokenizer import Tokenizer
from nmt.vocab import BOS, EOS, PAD, UNK

log = logging.getLogger(__name__)


class CT2Translator:
    """Translate with a CTranslate2 export on CPU or CUDA."""

    backend = "ctranslate2"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        threads: int = 0,
        compute_type: str = "default",
        inter_threads: int = 1,
        exact_length_limits: bool = False,
    ):
        threads = cap_threads(threads, "threads")
        inter_threads = cap_threads(inter_threads, "inter_threads", minimum=1)  # 0 hangs
        self.path = Path(path)
        self.source = str(self.path)
        self.info = read_ct2_info(self.path)
        spm_path = self.path / TOKENIZER_FILE
        self.tokenizer = Tokenizer(spm_path.read_bytes(), str(spm_path))
        if self.tokenizer.sha256() != self.info["tokenizer"]["sha256"]:
            raise ExportError(f"{spm_path}: does not match the sha256 in {EXPORT_INFO}")
        check_vocabulary(self.path, self.tokenizer)
        if not fits_in_memory(self.path):  # short of memory, CTranslate2 may abort the process
            raise ExportError(out_of_memory(self.path))
        try:
            self.translator = ctranslate2.Translator(
                str(self.path),
                device=device,
                compute_type=compute_type,
                inter_threads=inter_threads,
                intra_threads=threads,
            )
        except (MemoryError, RuntimeError) as e:  # also: another CTranslate2, a torn model.bin
            if is_out_of_memory(e):
                raise ExportError(out_of_memory(self.path)) from None
            raise ExportError(
                f"{self.path}: CTranslate2 {ctranslate2.__version__} cannot load this export "
                f"(written by CTranslate2 {self.info.get('ctranslate2_version')}): {e}"
            ) from None
        self.device, self.threads, self.compute_type = device, threads, compute_type
        self.exact_length_limits = exact_length_limits
        self.max_positions = int(self.info["model_config"]["max_positions"])
        self.max_input = self.max_positions - 1  # source tokens, EOS included
        self.has_vmap = (self.path / "vmap.txt").is_file()
        sp = self.tokenizer.sp
        self._never = [[sp.id_to_piece(PAD)], [sp.id_to_piece(BOS)]]  # never generated

    def translate(
        self,
        lines: list[str],
        decoding: Decoding | None = None,
        use_vmap: bool | None = None,
        **options: object,
    ) -> list[str]:
        """Translate `lines` under `decoding` (or its fields as keyword `options`); empty or
        whitespace-only lines give "" without reaching the model. `use_vmap` (default:
        whenever the export has a vmap.txt) restricts the output vocabulary per batch, which
        PyTorch does not do."""
        hyps = self.translate_nbest(lines, 1, decoding, use_vmap=use_vmap, **options)
        return [h[0].text for h in hyps]

    def translate_nbest(
        self,
        lines: list[str],
        n: int,
        decoding: Decoding | None = None,
        use_vmap: bool | None = None,
        **options: object,
    ) -> list[list[Hypothesis]]:
        """The `n` best translations of each line (at most the beam size), best first, with
        CTranslate2's scores; the first is `translate`'s. A blank line has one, ""."""
        d = decoding_of(decoding, **options)  # a ConfigError before any work
        n = check_nbest(n, d)
        outputs = [[Hypothesis("", 0.0)] for _ in lines]
        todo, pieces = encode_nonblank(lines, self.tokenizer.encode_pieces, self.max_input - 1)
        if not pieces:
            return outputs
        limits = self.length_limits([len(p) + 1 for p in pieces], d.max_len_a, d.max_len_b)
        max_batch_tokens = d.max_batch_tokens
        translators = self.translator.num_translators
        if translators > 1:  # split the call so that every translator gets a share
            share = -(-sum(len(p) + 1 for p in pieces) // translators)
            max_batch_tokens = min(max_batch_tokens, max(share, 1))
        settings = dict(
            max_batch_size=max_batch_tokens,
            batch_type="tokens",
            beam_size=d.beam_size,
            num_hypotheses=n,
            return_scores=True,
            length_penalty=d.length_penalty,
            max_input_length=0,  # truncated above, as PyTorch does
            use_vmap=self.has_vmap if use_vmap is None else use_vmap,
            suppress_sequences=self._never,
            no_repeat_ngram_size=d.no_repeat_ngram_size,  # CTranslate2's own guards: 0 and 1
            repetition_penalty=d.repetition_penalty,  # are its defaults, "off"
        )
        if d.beam_size == 1 or not self.exact_length_limits:
            groups = {max(limits, default=1): list(range(len(pieces)))}
        else:
            groups = defaultdict(list)
            for k, limit in enumerate(limits):
                groups[limit].append(k)
        for limit, members in groups.items():
            results = self.translator.translate_batch(
                [pieces[k] for k in members],
                max_decoding_length=limit,
                min_decoding_length=min(d.min_len, limit),
                **settings,
            )
            for k, r in zip(members, results, strict=True):
                ids = [
                    [self.tokenizer.sp.piece_to_id(p) for p in h[: limits[k]]] for h in r.hypotheses
                ]
                texts = self.tokenizer.decode(ids)
                outputs[todo[k]] = [
                    Hypothesis(cap_char_runs(text, d.max_char_repeat), score)
                    for text, score in zip(texts, r.scores, strict=True)
                ]
        return outputs

    def length_limits(self, src_lens: list[int], max_len_a: float, max_len_b: int) -> list[int]:
        """`max_len_a * src_len + max_len_b`, computed as `nmt.search` does (float32, then
        truncated), within [1, max_positions - 1]."""
        limits = (torch.tensor(src_lens, dtype=torch.float32) * max_len_a + max_len_b).long()
        return limits.clamp(min=1, max=self.max_positions - 1).tolist()


# The special tokens of CTranslate2's config.json, by the id whose piece each must be.
SPECIAL_TOKENS = {"unk_token": UNK, "bos_token": BOS, "eos_token": EOS, "decoder_start_token": BOS}
VOCABULARIES = ("shared_vocabulary", "source_vocabulary", "target_vocabulary")


def check_vocabulary(path: Path, tokenizer: Tokenizer) -> None:
    """Raise ExportError naming the file and key unless CTranslate2's `config.json` and
    vocabulary files speak the export's tokenizer: an EOS that is not the tokenizer's (or in
    no vocabulary) decodes without an error into nothing or garbage, and so does another
    vocabulary (an empty one fails only at the first translation)."""
    sp = tokenizer.sp
    config_path = path / "config.json"
    config = _read_json(config_path, dict)
    for key, i in SPECIAL_TOKENS.items():
        if config.get(key) != sp.id_to_piece(i):
            raise ExportError(
                f"{config_path}: {key} is {config.get(key)!r}, not the tokenizer's "
                f"{sp.id_to_piece(i)!r} ({TOKENIZER_FILE})"
            )
    pieces = [sp.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    for file in (path / f"{name}.json" for name in VOCABULARIES):
        if not file.is_file():  # the export writes the shared one; CTranslate2 needs one
            continue
        found = _read_json(file, list)
        if len(found) != len(pieces):
            raise ExportError(
                f"{file}: {len(found)} pieces, not the {len(pieces)} of the tokenizer"
            )
        for i, (piece, expected) in enumerate(zip(found, pieces, strict=True)):
            if piece != expected:
                raise ExportError(
                    f"{file}: piece {i} is {piece!r}, not the tokenizer's {expected!r}"
                )


def _read_json(file: Path, kind: type) -> Any:
    """The JSON value of `file`, which must be of type `kind`; ExportError naming it."""
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{file}: missing from the CTranslate2 export") from None
    except ValueError as e:
        raise ExportError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(value, kind):
        raise ExportError(f"{file}: a JSON {type(value).__name__}, not a {kind.__name__}")
    return value


def load_ct2(
    path: str | Path,
    device: str = "cpu",
    threads: int = 0,
    compute_type: str = "default",
    inter_threads: int = 1,
    exact_length_limits: bool = False,
    **_: object,
) -> CT2Translator:
    """Loader for `nmt.translate.BACKENDS`."""
    return CT2Translator(
        path,
        device=device,
        threads=threads,
        compute_type=compute_type,
        inter_threads=inter_threads,
        exact_length_limits=exact_length_limits,
    )
