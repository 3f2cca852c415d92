"""Export a checkpoint's model as a weights folder (`nmt.weights`): `model.safetensors`
(float16 by default), `spm.model` and `nmt_export.json`. The PyTorch backend translates
from it directly; it is the compact, pickle-free form in which trained models are kept
(`models/`) and shared."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nmt import __version__
from nmt.checkpoint import model_from_checkpoint
from nmt.export.folder import (
    EXPORT_INFO,
    source_model,
    tokenizer_info,
    write_json,
)
from nmt.outputs import claim
from nmt.weights import DTYPES, write_weights

log = logging.getLogger(__name__)

FORMAT = "nmt-safetensors"
FORMAT_VERSION = 1
QUANTIZATIONS = tuple(DTYPES)


def export_weights(
    state_or_checkpoint: dict[str, Any] | str | Path,
    out_dir: str | Path,
    quantization: str = "float16",
    checkpoint_path: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Write the weights folder `out_dir` of a checkpoint (a path, or the state
    `load_checkpoint` returns); `quantization` is the weights' dtype on disk (float16,
    bfloat16 or float32). The output rules of `nmt.outputs` apply."""
    state, checkpoint_path, tokenizer = source_model(state_or_checkpoint, checkpoint_path)
    out_dir = Path(out_dir)
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"unknown weights dtype {quantization!r} (known: {', '.join(QUANTIZATIONS)})"
        )
    output = claim(out_dir, "nmt-export", inputs=(checkpoint_path,), force=force)
    model = model_from_checkpoint(state)
    provenance = {
        "source_checkpoint": None if checkpoint_path is None else str(checkpoint_path),
        "step": state.get("step"),
        "averaged_from": state.get("averaged_from"),
        "parent": state.get("parent"),  # the model it was fine-tuned from (nmt.training.finetune)
    }
    with output.staging() as staging:
        write_weights(state, staging, dtype=quantization, provenance=provenance)
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "nmt_version": __version__,
            "checkpoint_nmt_version": state.get("nmt_version"),
            "quantization": quantization,
            "model_config": dict(state["model_config"]),
            "num_parameters": model.num_parameters(),
            "tokenizer": tokenizer_info(tokenizer),
            **provenance,
        }
        write_json(staging / EXPORT_INFO, info)
    log.info("exported %s weights -> %s", quantization, out_dir)
    return out_dir
