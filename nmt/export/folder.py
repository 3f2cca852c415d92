"""What every exporter shares: the source model and its tokenizer, the export folder's
files and provenance (`EXPORT_INFO`). Where an export may be written, and how it is built
aside and published by one rename, is `nmt.outputs` (`claim(...).staging()`): of two
exports to one path started together without `force`, exactly one succeeds.

An export folder is also read here without its engine: `read_info` (its `EXPORT_INFO`) and
the recognisers `is_ct2_export` and `is_onnx_export`, which look at files only, so that
`nmt.translate.BACKENDS` imports CTranslate2 or ONNX Runtime only for the backend it loads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from nmt.config import ConfigError, ModelConfig, from_dict
from nmt.tokenizer import Tokenizer
from nmt.vocab import BOS, EOS, PAD, UNK

log = logging.getLogger(__name__)

EXPORT_INFO = "nmt_export.json"  # CTranslate2 writes its own config.json beside it
TOKENIZER_FILE = "spm.model"
CT2_MODEL_FILE = "model.bin"  # CTranslate2's weights
ENCODER_FILE = "encoder.onnx"  # the ONNX export's two graphs (see nmt.export.onnx)
DECODER_FILE = "decoder.onnx"
# The formats' names and versions, as EXPORT_INFO's "format" and "format_version" record them.
CT2_FORMAT = ("nmt-ctranslate2", 1)
ONNX_FORMAT = ("nmt-onnx", 1)


class ExportError(RuntimeError):
    """The checkpoint cannot be exported, or the output folder is in the way."""


def is_export(path: Path) -> bool:
    """A folder an earlier export made (not a link to one: the link is not ours to follow)."""
    return path.is_dir() and not path.is_symlink() and (path / EXPORT_INFO).is_file()


def source_model(
    state_or_checkpoint: dict[str, Any] | str | Path, checkpoint_path: str | Path | None = None
) -> tuple[dict[str, Any], str | Path | None, Tokenizer]:
    """What every exporter starts from: the checkpoint's state (a path is loaded), its path
    for the provenance, and its tokenizer, checked against the sha256 the checkpoint
    recorded."""
    from nmt.checkpoint import load_checkpoint

    if isinstance(state_or_checkpoint, dict):
        state = state_or_checkpoint
    else:
        checkpoint_path = checkpoint_path or state_or_checkpoint
        state = load_checkpoint(state_or_checkpoint)
    tokenizer = Tokenizer(state["tokenizer_model"], "checkpoint:tokenizer_model")
    expected = state.get("tokenizer_sha256")
    if expected is not None and expected != tokenizer.sha256():
        raise ExportError(
            "the checkpoint's tokenizer does not match its recorded sha256 "
            f"({tokenizer.sha256()[:12]} != {str(expected)[:12]})"
        )
    return state, checkpoint_path, tokenizer


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def tokenizer_info(tokenizer: Tokenizer) -> dict[str, Any]:
    """The export's tokenizer, as `EXPORT_INFO` records it: its file, checksum, size and
    special pieces."""
    sp = tokenizer.sp
    return {
        "file": TOKENIZER_FILE,
        "sha256": tokenizer.sha256(),
        "vocab_size": tokenizer.vocab_size,
        "special_pieces": {
            name: sp.id_to_piece(i)
            for name, i in (("pad", PAD), ("unk", UNK), ("bos", BOS), ("eos", EOS))
        },
    }


def read_info(path: str | Path, fmt: str, version: int, engine: str) -> dict[str, Any]:
    """The `EXPORT_INFO` of an export folder of format `fmt`, `version` (shared by every
    exporter); raises ExportError naming the file (and key) if the folder is not one or
    the file lacks what the backends read: the tokenizer's sha256, a valid model_config."""
    info_path = Path(path) / EXPORT_INFO
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path}: not an nmt {engine} export (no {EXPORT_INFO})") from None
    except ValueError as e:  # not JSON, or not UTF-8
        raise ExportError(f"{info_path}: not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise ExportError(f"{info_path}: a JSON {type(info).__name__}, not an object")
    if info.get("format") != fmt or info.get("format_version") != version:
        raise ExportError(
            f"{info_path}: unsupported export format {info.get('format')!r} "
            f"version {info.get('format_version')!r} (this nmt reads {fmt} {version})"
        )
    tokenizer = info.get("tokenizer")
    if not (isinstance(tokenizer, dict) and isinstance(tokenizer.get("sha256"), str)):
        raise ExportError(f"{info_path}: no tokenizer.sha256 (the checksum of {TOKENIZER_FILE})")
    if not isinstance(info.get("model_config"), dict):
        raise ExportError(f"{info_path}: model_config is missing or not an object")
    try:  # the backends build on its shape (heads 0 would divide by zero)
        from_dict(ModelConfig, info["model_config"], "model.")
    except ConfigError as e:
        raise ExportError(f"{info_path}: model_config: {e}") from None
    return info


def read_ct2_info(path: str | Path) -> dict[str, Any]:
    """The provenance of a CTranslate2 export folder; raises ExportError if it is not one."""
    return read_info(path, *CT2_FORMAT, "CTranslate2")


def read_onnx_info(path: str | Path) -> dict[str, Any]:
    """The provenance of an ONNX export folder; raises ExportError if it is not one."""
    return read_info(path, *ONNX_FORMAT, "ONNX")


def kv_names(prefix: str, layers: int) -> list[str]:
    """`{prefix}_k_0, {prefix}_v_0, {prefix}_k_1, ...`: the ONNX graphs' per-layer K/V tensors,
    which the exporter names and the ONNX backend feeds."""
    return [f"{prefix}_{kv}_{i}" for i in range(layers) for kv in ("k", "v")]


def is_ct2_export(path: str | Path) -> bool:
    """True for a folder written by `nmt.export.ct2.export_ct2` (judged by its files)."""
    path = Path(path)
    return (path / CT2_MODEL_FILE).is_file() and (path / EXPORT_INFO).is_file()


def is_onnx_export(path: str | Path) -> bool:
    """True for a folder written by `nmt.export.onnx.export_onnx` (judged by its files)."""
    path = Path(path)
    return all((path / name).is_file() for name in (ENCODER_FILE, DECODER_FILE, EXPORT_INFO))
