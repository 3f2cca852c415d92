"""Exporters from checkpoints to inference engines (and to safetensors weights folders,
and Argos Translate packages), by format name.

Importing this package imports no engine: an engine's exporter module is imported when it
is called, and `QUANTIZATIONS` (CTranslate2's weight types) when it is first read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nmt.checkpoint import find_checkpoint, load_checkpoint
from nmt.export.folder import is_ct2_export
from nmt.export.weights import export_weights


def _export_ct2(*args: Any, **kwargs: Any) -> Path:
    """`nmt.export.ct2.export_ct2`, imported now (with CTranslate2)."""
    from nmt.export.ct2 import export_ct2

    return export_ct2(*args, **kwargs)


def _export_onnx(*args: Any, **kwargs: Any) -> Path:
    """`nmt.export.onnx.export_onnx`, imported now (with the ONNX exporter)."""
    from nmt.export.onnx import export_onnx

    return export_onnx(*args, **kwargs)


def _export_argos(*args: Any, **kwargs: Any) -> Path:
    """`nmt.export.argos.export_argos`, imported now (with CTranslate2 and ONNX)."""
    from nmt.export.argos import export_argos

    return export_argos(*args, **kwargs)


EXPORTERS: dict[str, Callable[..., Path]] = {
    "ct2": _export_ct2,
    "onnx": _export_onnx,
    "safetensors": export_weights,
    "argos": _export_argos,
}

# Formats that also take an nmt CTranslate2 export folder as their input (packaged as is).
FROM_CT2_EXPORT = {"argos"}

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
    quantization: str | None = None,
    vmap: str | Path | None = None,
    force: bool = False,
    **options: Any,
) -> Path:
    """Export the checkpoint `model` (a .pt file, or a run folder: its averaged, best or
    last checkpoint; for the formats in FROM_CT2_EXPORT also a CTranslate2 export folder) to
    `out_dir` in `format`. `quantization` defaults to float32, int8 for argos; `options`
    go to the exporter (argos: from_code, to_code, version, sbd_model)."""
    if format not in EXPORTERS:
        raise ValueError(f"unknown export format {format!r} (known: {', '.join(EXPORTERS)})")
    if vmap is not None:
        options["vmap"] = vmap
    if format in FROM_CT2_EXPORT and is_ct2_export(model):
        if quantization is not None:
            options["quantization"] = quantization
        return EXPORTERS[format](Path(model), out_dir, force=force, **options)
    ckpt = find_checkpoint(Path(model))
    default = "int8" if format == "argos" else "float32"
    return EXPORTERS[format](
        load_checkpoint(ckpt),
        out_dir,
        quantization=quantization or default,
        force=force,
        checkpoint_path=ckpt,
        **options,
    )
