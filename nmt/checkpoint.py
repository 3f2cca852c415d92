"""Checkpoints that describe themselves: weights plus model config, run config, tokenizer
hash and toolkit version. Written atomically; verified on load; averaged on request.

Verification on load: the CRC-32 of every record of the file (torch.save writes a zip
archive with CRCs that torch.load does not check), the format version, and that the weights
have the names and shapes their model config implies.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

import torch

from nmt import __version__
from nmt.config import ConfigError, ModelConfig, from_dict
from nmt.fileio import atomic_torch_save
from nmt.model import Transformer

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, unwritable, or from an incompatible format."""


def save_checkpoint(
    path: str | Path,
    model: Transformer,
    run_config: dict[str, Any],
    tokenizer_sha256: str,
    **extra: Any,
) -> None:
    state = {
        "format_version": FORMAT_VERSION,
        "nmt_version": __version__,
        "model_config": run_config["model"],
        "run_config": run_config,
        "tokenizer_sha256": tokenizer_sha256,
        "model": model.state_dict(),  # tied weights stay one tensor in the file
        **extra,
    }
    atomic_torch_save(state, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint written by `save_checkpoint` (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    _check_crc(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or foreign file: say which, not where in pickle it broke
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path}: not an nmt checkpoint (no format_version)")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {state['format_version']} (nmt "
            f"{state.get('nmt_version', '?')}) is not supported by nmt {__version__} "
            f"(format {FORMAT_VERSION})"
        )
    _check_weights(path, state)
    return state


def _check_crc(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from None
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt checkpoint (CRC mismatch in record {bad})")


def _check_weights(path: Path, state: dict[str, Any]) -> None:
    """The weights must be exactly those of the model the checkpoint's config describes."""
    if not isinstance(state.get("model"), dict) or "model_config" not in state:
        raise CheckpointError(f"{path}: not an nmt checkpoint (no model or model_config)")
    try:
        config = from_dict(ModelConfig, state["model_config"], "model.")
    except ConfigError as e:
        raise CheckpointError(f"{path}: model_config: {e}") from None
    with torch.device("meta"):
        expected = {k: v.shape for k, v in Transformer(config).state_dict().items()}
    found = {k: v.shape for k, v in state["model"].items()}
    if found != expected:
        missing = sorted(expected.keys() - found.keys())
        extra = sorted(found.keys() - expected.keys())
        shapes = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
        raise CheckpointError(
            f"{path}: weights do not match model_config (missing {missing[:3]}, "
            f"unexpected {extra[:3]}, other shape {shapes[:3]})"
        )


def model_from_checkpoint(state: dict[str, Any]) -> Transformer:
    model = Transformer(from_dict(ModelConfig, state["model_config"], "model."))
    model.load_state_dict(state["model"])
    model.eval()
    return model


def average_checkpoints(paths: list[str | Path]) -> dict[str, Any]:
    """Average the weights of several checkpoints of one run (Vaswani et al. 2017).

    The result keeps the metadata of the last checkpoint and records its sources.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    states = [load_checkpoint(p) for p in paths]
    ref = states[-1]
    for p, s in zip(paths, states, strict=True):
        if s["model_config"] != ref["model_config"]:
            raise CheckpointError(f"{p}: model config differs from {paths[-1]}; cannot average")
    avg = {}
    for key, value in ref["model"].items():
        if value.is_floating_point():
            avg[key] = (
                sum(s["model"][key].double() for s in states).div(len(states)).to(value.dtype)
            )
        else:
            avg[key] = value
    out = {k: v for k, v in ref.items() if k not in ("optimizer", "scheduler", "rng", "data")}
    out["model"] = avg
    out["averaged_from"] = [str(p) for p in paths]
    return out
