"""Joint SentencePiece tokenizer with the toolkit's fixed special ids.

pad 0, unk 1, bos 2, eos 3, whatever the corpus; byte fallback keeps rare characters.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from nmt.config import TokenizerConfig
from nmt.fileio import atomic_write_bytes
from nmt.vocab import BOS, EOS, PAD, UNK

log = logging.getLogger(__name__)


class Tokenizer:
    """Text <-> ids. Built from the serialized SentencePiece model, which checkpoints and
    exports carry with them, so a model never depends on a file beside it."""

    def __init__(self, model_proto: bytes, source: str = "<bytes>"):
        """Raises ValueError, one line naming `source`, for bytes that are not a SentencePiece
        model, none at all (SentencePiece would leave its model unloaded and log to stderr),
        or a model without the toolkit's special ids."""
        self.model_proto, self.source = model_proto, source
        if not model_proto:
            raise ValueError(f"{source}: empty (0 bytes): not a SentencePiece model")
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except RuntimeError as e:
            reason = " ".join(str(e).split())  # SentencePiece's words, on one line
            raise ValueError(f"{source}: not a SentencePiece model ({reason})") from None
        ids = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if ids != (PAD, UNK, BOS, EOS):
            raise ValueError(
                f"{source}: SentencePiece special ids are {ids}, expected "
                f"pad/unk/bos/eos = {(PAD, UNK, BOS, EOS)}"
            )

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: SentencePiece model not found") from None
        return cls(data, str(path))

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, lines: list[str]) -> list[list[int]]:
        try:
            return self.sp.encode(lines)
        except TypeError:  # a lone surrogate, which UTF-8 cannot encode
            return self.sp.encode(_encodable(lines))

    def encode_pieces(self, lines: list[str]) -> list[list[str]]:
        try:
            return self.sp.encode(lines, out_type=str)
        except TypeError:
            return self.sp.encode(_encodable(lines), out_type=str)

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.sp.decode(ids)

    def sha256(self) -> str:
        return hashlib.sha256(self.model_proto).hexdigest()


def _encodable(lines: list[str]) -> list[str]:
    """Lines with what UTF-8 cannot encode (lone surrogates) replaced by "?"."""
    return [line.encode("utf-8", "replace").decode("utf-8") for line in lines]


def train_tokenizer(
    lines: Iterable[str], config: TokenizerConfig, out_path: str | Path
) -> Tokenizer:
    """Train a joint SentencePiece model on `lines` and write it atomically to `out_path`."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type=config.type,
        vocab_size=config.vocab_size,
        character_coverage=config.character_coverage,
        byte_fallback=config.byte_fallback,
        input_sentence_size=config.input_sentence_size,
        seed_sentencepiece_size=config.seed_sentencepiece_size,
        shuffle_input_sentence=True,
        pad_id=PAD,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        pad_piece="<pad>",
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        normalization_rule_name="nmt_nfkc",
        hard_vocab_limit=False,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
    atomic_write_bytes(out_path, model.getvalue())
    tok = Tokenizer(model.getvalue(), str(out_path))
    log.info(
        "trained SentencePiece %s model: %d pieces -> %s", config.type, tok.vocab_size, out_path
    )
    return tok
