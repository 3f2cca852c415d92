"""Shared fixtures: tiny models, a toy parallel corpus, and the ../shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nmt.config import ModelConfig
from nmt.model import Transformer

torch.set_num_threads(1)

# CTranslate2 runs its int8 matrix products through oneDNN on AMD CPUs and through MKL on
# Intel ones. On AMD CPUs with AVX2 only (no AVX-512 VNNI), oneDNN's int8 products are
# coarser: the toy models' int8 exports then agree with float32 on 79-81% of the test
# inputs (near ties between two training sentences flip), against >= 90% through MKL on the
# same machine; real models lose no BLEU either way (benchmarks/results/multi30k-3h/bench).
# The tests check our quantized export, not the CPU's int8 kernels: MKL everywhere.
os.environ.setdefault("CT2_USE_MKL", "1")

SHARED_DATA = Path(
    os.environ.get("NMT_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


def tiny_config(**changes) -> ModelConfig:
    base = dict(
        vocab_size=40,
        d_model=32,
        heads=4,
        ffn=64,
        enc_layers=2,
        dec_layers=2,
        dropout=0.0,
        attn_dropout=0.0,
        max_positions=64,
    )
    base.update(changes)
    return ModelConfig(**base)


@pytest.fixture
def tiny_model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(tiny_config()).eval()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "multi30k" / "train.en").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set NMT_DATA_DIR)")
    return SHARED_DATA


TOY_PAIRS = [
    ("a dog runs", "ein hund rennt"),
    ("a cat sleeps", "eine katze schläft"),
    ("two men play", "zwei männer spielen"),
    ("a woman reads a book", "eine frau liest ein buch"),
    ("the child laughs", "das kind lacht"),
    ("a man rides a bike", "ein mann fährt ein fahrrad"),
    ("people walk in the street", "leute gehen auf der straße"),
    ("a girl sings", "ein mädchen singt"),
]


@pytest.fixture
def toy_corpus(tmp_path: Path) -> Path:
    """A folder with train/val files (en, de) of the toy pairs, repeated."""
    from .toys import write_toy_corpus

    return write_toy_corpus(tmp_path / "toy")


@pytest.fixture(scope="session")
def toy_tokenizer(tmp_path_factory):
    """A 60-piece SentencePiece model of the toy pairs."""
    from nmt.config import TokenizerConfig
    from nmt.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("spm") / "spm.model"
    texts = [*(s for s, _ in TOY_PAIRS), *(t for _, t in TOY_PAIRS)] * 4
    return train_tokenizer(texts, TokenizerConfig(vocab_size=60, byte_fallback=False), path)
