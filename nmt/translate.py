"""One translation API: `load(path)` returns a translator with `translate(lines, ...)`.

Backends are registered in `BACKENDS`; each recognises its own artifacts. The PyTorch
backend reads a run folder (its averaged, best or latest checkpoint) or a checkpoint file.
Output is always line-aligned with input: an empty or whitespace-only line translates to an
empty line without reaching the model; an over-long line is truncated with a warning; a
character UTF-8 cannot encode (a lone surrogate) is read as "?"; and `translate_stream`
turns line breaks a model may generate (byte fallback can spell any character) into spaces,
so one line in is one line out for any reader of the output.

`translate_stream` refuses a line longer than `MAX_LINE_CHARS` characters (`max_line_chars`
raises or, at 0, lifts the limit), after writing the translations of the lines before it.
Memory follows the longest line (one 17.8 MB line took nmt-translate 790 MB), and no model
here reads past 1024 tokens (a few thousand characters), so such a line is not a sentence
to translate but a file without line breaks, or a mistake. Refused rather than split: pieces
cut at arbitrary points would come back as one line of fragments that reads as a
translation and is not one, and would cost the time of thousands of sentences.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from nmt.backends.base import SearchTranslator, Translator
from nmt.backends.foreign import is_foreign
from nmt.backends.pytorch import TorchTranslator, is_torch, load_ensemble, load_torch
from nmt.config import ConfigError
from nmt.decoding import Decoding, is_out_of_memory
from nmt.export.folder import is_ct2_export, is_onnx_export
from nmt.outputs import Output

__all__ = [
    "BACKENDS",
    "MAX_LINE_CHARS",
    "LineTooLongError",
    "SearchTranslator",
    "TorchTranslator",
    "Translator",
    "load",
]

# The longest input line `translate_stream` accepts by default, in characters.
MAX_LINE_CHARS = 10_000

# Everything `str.splitlines` breaks at.
_LINE_BREAKS = str.maketrans(dict.fromkeys("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "))


def _load_ct2(path: Path, **options: object) -> object:
    from nmt.backends.ct2 import load_ct2  # CTranslate2 is imported only to load an export

    return load_ct2(path, **options)


def _load_onnx(path: Path, **options: object) -> object:
    from nmt.backends.onnx import load_onnx  # ONNX Runtime is imported only to load an export

    return load_onnx(path, **options)


def _load_foreign(path: Path, **options: object) -> object:
    from nmt.backends.foreign import load_foreign  # CTranslate2 only once a model loads

    return load_foreign(path, **options)


# name -> (recogniser, loader); `load` asks each recogniser in turn. Recognisers look at
# files only; a loader imports its engine, so a process pays only for the engine it uses.
# "foreign" (models nmt did not make: CTranslate2 folders, Argos packages, Hugging Face
# folders) is asked first: a Hugging Face folder's model.safetensors would pass for nmt
# weights, and its recogniser never takes what nmt made (nmt_export.json, no config.json).
BACKENDS: dict[str, tuple[Callable[[Path], bool], Callable[..., object]]] = {
    "foreign": (is_foreign, _load_foreign),
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
        f"{path}: not a model this toolkit recognises (a run folder, a .pt checkpoint, an "
        "export, a CTranslate2 folder, an Argos package or a Hugging Face seq2seq folder)"
    )


class LineTooLongError(ValueError):
    """An input line longer than `translate_stream`'s `max_line_chars`."""


def translate_stream(
    translator: Translator,
    lines: Iterable[str],
    chunk_lines: int = 2000,
    max_line_chars: int = MAX_LINE_CHARS,
    **options: object,
) -> Iterator[str]:
    """Translate an iterable of lines chunk by chunk, so memory stays bounded; each output
    is one line (line breaks inside it become spaces). A line longer than `max_line_chars`
    characters (0: no limit) raises LineTooLongError naming it, once the lines before it
    are translated."""
    if isinstance(max_line_chars, bool) or not isinstance(max_line_chars, int):
        raise ConfigError(f"max_line_chars: must be an integer, got {max_line_chars!r}")
    if max_line_chars < 0:
        raise ConfigError(f"max_line_chars: must be >= 0 (0: no limit), got {max_line_chars}")

    def one_line_each(chunk: list[str]) -> Iterator[str]:
        return (text.translate(_LINE_BREAKS) for text in translator.translate(chunk, **options))

    chunk: list[str] = []
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if max_line_chars and len(line) > max_line_chars:
            if chunk:  # the output ends with the line before it
                yield from one_line_each(chunk)
            raise LineTooLongError(
                f"input line {number} has {len(line):,} characters, more than the "
                f"{max_line_chars:,} allowed (raise the limit with max_line_chars, "
                "--max-line-chars; 0: no limit)"
            )
        chunk.append(line)
        if len(chunk) >= chunk_lines:
            yield from one_line_each(chunk)
            chunk = []
    if chunk:
        yield from one_line_each(chunk)


def translate_file(
    translator: Translator,
    source: str | Path | None,
    output: Output | None,
    decoding: Decoding,
    max_line_chars: int = MAX_LINE_CHARS,
    **options: object,
) -> None:
    """Translate the file `source` (None: stdin) into `output`, a file claimed with
    `nmt.outputs.claim` and published only once every line is translated (None: stdout),
    one line out per line in: invalid UTF-8 is read as U+FFFD rather than stopping the run.

    An unreadable input, a full disk or a line too long raise OSError or ValueError; running
    out of memory, in whatever words the engine says it, raises a one-line MemoryError
    saying what to lower."""
    try:
        with contextlib.ExitStack() as stack:
            src = stack.enter_context(
                open(source, encoding="utf-8", errors="replace", newline="\n")
                if source
                else open(
                    sys.stdin.fileno(),
                    encoding="utf-8",
                    errors="replace",
                    newline="\n",
                    closefd=False,
                )
            )
            out = stack.enter_context(output.open_text()) if output else sys.stdout
            lines = translate_stream(
                translator, src, max_line_chars=max_line_chars, **asdict(decoding), **options
            )
            for line in lines:
                out.write(line.replace("\n", " ") + "\n")
            out.flush()
    except (OSError, ValueError):
        raise
    except Exception as e:  # MemoryError, or an engine's own words for it
        if not is_out_of_memory(e):
            raise
        raise MemoryError(
            f"out of memory while translating: lower --batch-tokens ({decoding.max_batch_tokens}) "
            f"or --beam ({decoding.beam_size}), or use an int8 export (nmt-export --int8)"
        ) from None
