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

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from nmt.backends.base import SearchTranslator, Translator
from nmt.backends.pytorch import TorchTranslator, is_torch, load_ensemble, load_torch
from nmt.export.folder import is_ct2_export, is_onnx_export

__all__ = ["BACKENDS", "SearchTranslator", "TorchTranslator", "Translator", "load"]

# Everything `str.splitlines` breaks at.
_LINE_BREAKS = str.maketrans(dict.fromkeys("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "))


def _load_ct2(path: Path, **options: object) -> object:
    from nmt.backends.ct2 import load_ct2  # CTranslate2 is imported only to load an export

    return load_ct2(path, **options)


def _load_onnx(path: Path, **options: object) -> object:
    from nmt.backends.onnx import load_onnx  # ONNX Runtime is imported only to load an export

    return load_onnx(path, **options)


# name -> (recogniser, loader); `load` asks each recogniser in turn. Recognisers look at
# files only; a loader imports its engine, so a process pays only for the engine it uses.
BACKENDS: dict[str, tuple[Callable[[Path], bool], Callable[..., object]]] = {
    "pytorch": (is_torch, load_torch),
    "ctranslate2": (is_ct2_export, _load_ct2),
    "onnx": (is_onnx_export, _load_onnx),
}


def load(
    path: str | Path | Sequence[str | Path], backend: str = "auto", **options: object
) -> Translator:
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
    translator: Translator, lines: Iterable[str], chunk_lines: int = 2000, **options: object
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
