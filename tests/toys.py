"""Toy inputs and models shared by the export and backend tests."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import random
from pathlib import Path

import torch

from nmt.config import ModelConfig
from nmt.model import Transformer
from nmt.tokenizer import Tokenizer
from nmt.vocab import PAD

from .conftest import TOY_PAIRS

SOURCES = [s for s, _ in TOY_PAIRS]
TARGETS = [t for _, t in TOY_PAIRS]
WORDS = sorted({w for s in SOURCES for w in s.split()})


def plain_inputs() -> list[str]:
    """The training sources, pairs of them and random word salad."""
    rng = random.Random(0)
    salad = [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(60)]
    pairs = [f"{a} {b}" for a, b in itertools.permutations(SOURCES[:5], 2)]
    return [*SOURCES, *pairs, *salad]


def many_inputs() -> list[str]:
    """`plain_inputs`, plus blank lines and a line longer than the model accepts."""
    return [*plain_inputs(), "", "   ", " ".join(WORDS * 4)]


def fraction_equal(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def write_toy_corpus(folder: Path) -> Path:
    """train/val files (en, de) of the toy pairs, repeated."""
    folder.mkdir(parents=True)
    for split, reps in (("train", 8), ("val", 1)):
        (folder / f"{split}.en").write_text("".join(f"{s}\n" for s in SOURCES) * reps)
        (folder / f"{split}.de").write_text("".join(f"{t}\n" for t in TARGETS) * reps)
    return folder


def random_state(tokenizer: Tokenizer, seed: int = 0, **changes) -> dict:
    """A checkpoint of a randomly initialised model with untied embeddings (the trained
    models are tied), weights spread wider than the default init and random norms and
    biases, so that outputs depend on the input rather than repeat one token."""
    fields = dict(
        vocab_size=tokenizer.vocab_size,
        d_model=32,
        heads=4,
        ffn=64,
        enc_layers=2,
        dec_layers=2,
        dropout=0.0,
        attn_dropout=0.0,
        max_positions=64,
        tie_embeddings=False,
    )
    config = ModelConfig(**{**fields, **changes})
    torch.manual_seed(seed)
    model = Transformer(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn_like(p))
            elif name.endswith("embed.weight"):
                p.normal_(0.0, 0.5)
                p[PAD] = 0.0
            else:
                p.normal_(0.0, 2.0 / math.sqrt(p.shape[1]))
    return {
        "format_version": 1,
        "model": model.state_dict(),
        "model_config": dataclasses.asdict(config),
        "tokenizer_model": tokenizer.model_proto,
        "tokenizer_sha256": tokenizer.sha256(),
    }


def toy_argos_package(root: Path, tokenizer: Tokenizer) -> Path:
    """An Argos package of a random toy nmt model, made by nmt-export --format argos (its
    sentence splitter is an ONNX model: skipped without onnx)."""
    import pytest

    pytest.importorskip("onnx")
    from nmt.export.argos import export_argos

    return export_argos(random_state(tokenizer), root / "toy.argosmodel", "float32", None,
                        from_code="en", to_code="de")  # fmt: skip


def toy_exports(root: Path, tokenizer: Tokenizer) -> dict[str, Path]:
    """A random toy checkpoint and its CTranslate2 and ONNX exports (where those engines are
    installed), by backend name."""
    from nmt.fileio import atomic_torch_save

    state = random_state(tokenizer)
    atomic_torch_save(state, root / "toy.pt")
    paths = {"pytorch": root / "toy.pt"}
    if importlib.util.find_spec("ctranslate2"):
        from nmt.export.ct2 import export_ct2

        paths["ctranslate2"] = export_ct2(state, root / "ct2")
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        from nmt.export.onnx import export_onnx

        paths["onnx"] = export_onnx(state, root / "onnx")
    return paths
