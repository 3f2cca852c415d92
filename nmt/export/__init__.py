"""Exporters from checkpoints to inference engines, by format name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nmt.checkpoint import find_checkpoint, load_checkpoint
from nmt.export.ct2 import QUANTIZATIONS, export_ct2
from nmt.export.onnx import export_onnx

EXPORTERS: dict[str, Callable[..., Path]] = {
    "ct2": export_ct2,
    "onnx": export_onnx,
}

__all__ = ["EXPORTERS", "QUANTIZATIONS", "export"]


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
