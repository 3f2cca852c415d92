"""Exporters from checkpoints to inference engines (and to safetensors weights folders),
by format name.

Importing this package imports no engine: an engine's exporter module is imported when it
is called, and `QUANTIZATIONS` (CTranslate2's weight types) when it is first read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nmt.checkpoint import find_checkpoint, load_checkpoint
from nmt.export.weights import export_weights


def _export_ct2(*args: Any, **kwargs: Any) -> Path:
    """`nmt.export.ct2.export_ct2`, imported now (with CTranslate2)."""
    from nmt.export.ct2 import export_ct2

    return export_ct2(*args, **kwargs)


def _export_onnx(*args: Any, **kwargs: Any) -> Path:
    """`nmt.export.onnx.export_onnx`, imported now (with the ONNX exporter)."""
    from nmt.export.onnx import export_onnx

    return export_onnx(*args, **kwargs)


EXPORTERS: dict[str, Callable[..., Path]] = {
    "ct2": _export_ct2,
    "onnx": _export_onnx,
    "safetensors": export_weights,
}

__all__ = ["EXPORTERS", "QUANTIZATIONS", "export"]


def __getattr__(name: str) -> Any:
    """`QUANTIZATIONS`: CTranslate2's weight types, read from CTranslate2 (imported now)."""
    if name == "QUANTIZATIONS":
        from nmt.export.ct2 import QUANTIZATIONS

        return QUANTIZATIONS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def export(
    model: str | Path,
    out_dir: str | Path,
    format: str = "ct2",
    quantization: str = "float32",
    vmap: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Export the checkpoint `model` (a .pt file, or a run folder: its averaged, best or
    last checkpoint) to `out_dir` in `format`."""
    if format not in EXPORTERS:
        raise ValueError(f"unknown export format {format!r} (known: {', '.join(EXPORTERS)})")
    ckpt = find_checkpoint(Path(model))
    options = {"vmap": vmap} if vmap is not None else {}
    return EXPORTERS[format](
        load_checkpoint(ckpt),
        out_dir,
        quantization=quantization,
        force=force,
        checkpoint_path=ckpt,
        **options,
    )
