"""The PyTorch backend: a run folder (its chosen checkpoint), a `.pt` checkpoint or a
safetensors weights folder, on CPU or CUDA; several of one tokenizer decode as an ensemble
(`nmt.ensemble`: the members' probabilities averaged at every step)."""

from __future__ import annotations

from pathlib import Path

import torch

from nmt.backends.base import SearchTranslator
from nmt.checkpoint import (
    RUN_CHECKPOINTS,
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
)
from nmt.decoding import (
    cap_threads,
    check_threads,
    fits_in_memory,
    is_out_of_memory,
    out_of_memory,
)
from nmt.model import Transformer
from nmt.tokenizer import Tokenizer
from nmt.weights import is_weights


class TorchTranslator(SearchTranslator):
    """Translate with a PyTorch `Transformer` (or `Ensemble`) on CPU or CUDA."""

    backend = "pytorch"

    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        device: str = "cpu",
        threads: int = 0,
        source: str = "",
    ):
        threads = cap_threads(threads, "threads")
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = self.input_device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.source = source
        self.max_input = model.config.max_positions - 1


def load_torch(path: Path, device: str = "cpu", threads: int = 0, **_: object) -> TorchTranslator:
    check_threads(threads, "threads")  # before the model is loaded
    ckpt = find_checkpoint(path)
    if not fits_in_memory(ckpt, copies=2):  # the checkpoint, then the model built from it
        raise CheckpointError(out_of_memory(ckpt, copies=2))
    try:
        state = load_checkpoint(ckpt)
        tokenizer = Tokenizer(state["tokenizer_model"], f"{ckpt}:tokenizer_model")
        return TorchTranslator(
            model_from_checkpoint(state, ckpt), tokenizer, device, threads, str(ckpt)
        )
    except (MemoryError, RuntimeError) as e:  # PyTorch's allocators raise RuntimeError
        if isinstance(e, CheckpointError) or not is_out_of_memory(e):
            raise
        raise CheckpointError(out_of_memory(ckpt)) from None


def is_torch(path: Path) -> bool:
    return (
        path.suffix == ".pt"
        or any((path / n).is_file() for n in RUN_CHECKPOINTS)
        or is_weights(path)
    )


def load_ensemble(
    paths: list[Path], backend: str = "auto", device: str = "cpu", threads: int = 0, **_: object
) -> TorchTranslator:
    """One PyTorch translator over several models (checkpoints, run folders or weights
    folders) of one tokenizer, their probabilities averaged at every step."""
    from nmt.ensemble import Ensemble

    if backend not in ("auto", "pytorch"):
        raise ValueError(f"an ensemble decodes with the PyTorch backend, not {backend!r}")
    check_threads(threads, "threads")
    models, tokenizer, sources = [], None, []
    for path in paths:
        ckpt = find_checkpoint(path)
        state = load_checkpoint(ckpt)
        member = Tokenizer(state["tokenizer_model"], f"{ckpt}:tokenizer_model")
        if tokenizer is not None and member.sha256() != tokenizer.sha256():
            raise CheckpointError(
                f"{ckpt}: its tokenizer differs from {sources[0]}'s; ensemble members must "
                "share one tokenizer"
            )
        tokenizer = tokenizer or member
        models.append(model_from_checkpoint(state, ckpt))
        sources.append(str(ckpt))
    return TorchTranslator(Ensemble(models), tokenizer, device, threads, " + ".join(sources))
