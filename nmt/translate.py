"""One translation API: `load(path)` returns a translator with `translate(lines, ...)`.

Backends are registered in `BACKENDS`; each recognises its own artifacts. The PyTorch
backend reads a run folder (its averaged, best or latest checkpoint) or a checkpoint file.
Output is always line-aligned with input: an empty or whitespace-only line translates to an
empty line without reaching the model; an over-long line is truncated with a warning; a
character UTF-8 cannot encode (a lone surrogate) is read as "?"; and `translate_stream`
turns line breaks a model may generate (byte fallback can spell any character) into spaces,
so one line in is one line out for any reader of the output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch

from nmt.batching import pad_sources, token_batches
from nmt.checkpoint import (
    RUN_CHECKPOINTS,
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
)
from nmt.decoding import (
    Decoding,
    cap_threads,
    check_threads,
    fits_in_memory,
    is_out_of_memory,
    out_of_memory,
)
from nmt.export.folder import is_ct2_export, is_onnx_export
from nmt.inputs import encode_nonblank
from nmt.model import Transformer
from nmt.search import SearchOptions, search
from nmt.tokenizer import Tokenizer
from nmt.vocab import EOS
from nmt.weights import is_weights

log = logging.getLogger(__name__)

# Everything `str.splitlines` breaks at.
_LINE_BREAKS = str.maketrans(dict.fromkeys("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "))


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
        self,
        lines: list[str],
        beam_size: int = Decoding.beam_size,
        max_batch_tokens: int = Decoding.max_batch_tokens,
        length_penalty: float = Decoding.length_penalty,
        max_len_a: float = Decoding.max_len_a,
        max_len_b: int = Decoding.max_len_b,
        min_len: int = Decoding.min_len,
    ) -> list[str]:
        """Translate `lines`; empty or whitespace-only lines give "" without reaching the
        model."""
        # A ConfigError naming the option for an impossible value, before any work.
        Decoding(beam_size, max_batch_tokens, length_penalty, max_len_a, max_len_b, min_len)
        opts = SearchOptions(beam_size, length_penalty, max_len_a, max_len_b, min_len)
        outputs = [""] * len(lines)
        todo, ids = encode_nonblank(lines, self.tokenizer.encode, self.max_input - 1)
        ids = [seq + [EOS] for seq in ids]
        for batch in token_batches([len(s) for s in ids], max_batch_tokens):
            src = pad_sources([ids[k] for k in batch]).to(self.input_device)
            hyps = search(self.model, src, opts)
            for k, text in zip(batch, self.tokenizer.decode(hyps), strict=True):
                outputs[todo[k]] = text
        return outputs


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
        return TorchTranslator(model_from_checkpoint(state), tokenizer, device, threads, str(ckpt))
    except (MemoryError, RuntimeError) as e:  # PyTorch's allocators raise RuntimeError
        if isinstance(e, CheckpointError) or not is_out_of_memory(e):
            raise
        raise CheckpointError(out_of_memory(ckpt)) from None


def _is_torch(path: Path) -> bool:
    return (
        path.suffix == ".pt"
        or any((path / n).is_file() for n in RUN_CHECKPOINTS)
        or is_weights(path)
    )


def _load_ct2(path: Path, **options: object) -> object:
    from nmt.backends.ct2 import load_ct2  # CTranslate2 is imported only to load an export

    return load_ct2(path, **options)


def _load_onnx(path: Path, **options: object) -> object:
    from nmt.backends.onnx import load_onnx  # ONNX Runtime is imported only to load an export

    return load_onnx(path, **options)


# name -> (recogniser, loader); `load` asks each recogniser in turn. Recognisers look at
# files only; a loader imports its engine, so a process pays only for the engine it uses.
BACKENDS: dict[str, tuple[Callable[[Path], bool], Callable[..., object]]] = {
    "pytorch": (_is_torch, load_torch),
    "ctranslate2": (is_ct2_export, _load_ct2),
    "onnx": (is_onnx_export, _load_onnx),
}


def load(path: str | Path | Sequence[str | Path], backend: str = "auto", **options: object):
    """Load any supported model artifact and return its translator; several paths
    (PyTorch checkpoints, run or weights folders of one tokenizer) give one ensemble."""
    if not isinstance(path, str | Path):
        paths = [Path(p) for p in path]
        for p in paths:
            if not p.exists():
                raise FileNotFoundError(f"{p}: no such model file or folder")
        if len(paths) > 1:
            return load_ensemble(paths, backend, **options)
        path = paths[0]
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or folder")
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
        return BACKENDS[backend][1](path, **options)
    for recognise, loader in BACKENDS.values():
        if recognise(path):
            return loader(path, **options)
    raise ValueError(
        f"{path}: not a model this toolkit recognises (a run folder, a .pt "
        f"checkpoint{', or an export' if len(BACKENDS) > 1 else ''})"
    )


def translate_stream(
    translator, lines: Iterable[str], chunk_lines: int = 2000, **options: object
) -> Iterator[str]:
    """Translate an iterable of lines chunk by chunk, so memory stays bounded; each output
    is one line (line breaks inside it become spaces)."""

    def one_line_each(chunk: list[str]) -> Iterator[str]:
        return (text.translate(_LINE_BREAKS) for text in translator.translate(chunk, **options))

    chunk: list[str] = []
    for line in lines:
        chunk.append(line.rstrip("\r\n"))
        if len(chunk) >= chunk_lines:
            yield from one_line_each(chunk)
            chunk = []
    if chunk:
        yield from one_line_each(chunk)


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
        models.append(model_from_checkpoint(state))
        sources.append(str(ckpt))
    return TorchTranslator(Ensemble(models), tokenizer, device, threads, " + ".join(sources))
