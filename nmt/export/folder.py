"""The export folder's life cycle, shared by every exporter: check the output path, build
in a hidden work folder beside it, publish by one rename, recover after a kill.

What may be replaced: an existing output folder only with `force`, and only if an earlier
export made it (it holds `nmt_export.json`) and it neither is, holds nor lies inside one of
the export's inputs (the checkpoint, the vocabulary map). Anything else (a run folder, its
parent, a `.pt` file, a user's own folder) is refused with one line naming the path, and
nothing is deleted.

Publishing is a rename of the finished folder onto the output path, which fails when a
non-empty folder is already there: of two exports to one path started together without
`force`, exactly one succeeds and the other fails with `FileExistsError`. The checks are
made again at publish time, not only at the start.

An export folder is also read here without its engine: `read_info` (its `EXPORT_INFO`) and
the recognisers `is_ct2_export` and `is_onnx_export`, which look at files only, so that
`nmt.translate.BACKENDS` imports CTranslate2 or ONNX Runtime only for the backend it loads.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nmt.fileio import temporary_prefix
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


def check_output(out_dir: Path, force: bool, inputs: Iterable[str | Path | None] = ()) -> None:
    """Refuse an `out_dir` that exists, unless `force` and it is an earlier export that is
    not, does not hold and does not lie inside any of `inputs`."""
    if not (out_dir.exists() or out_dir.is_symlink()):
        return
    if not force:
        raise FileExistsError(f"{out_dir}: already exists (use --force to replace an export)")
    out = out_dir.resolve()
    for source in filter(None, inputs):
        src = Path(source).resolve()
        if out == src or out in src.parents or src in out.parents:
            raise ExportError(
                f"{out_dir}: is, holds or lies inside the input {source}; --force never "
                "replaces an input: choose another output folder"
            )
    if not is_export(out_dir):
        raise ExportError(
            f"{out_dir}: exists and is not an export (no {EXPORT_INFO}); --force replaces "
            "only a folder an earlier export made: choose another output folder"
        )


def make_workdir(out_dir: Path) -> Path:
    """A fresh hidden work folder beside `out_dir`, named after it and this process."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{temporary_prefix(out_dir)}{os.getpid()}."
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=out_dir.parent))


def recover_interrupted(out_dir: Path) -> None:
    """Clear the work folders of exports to `out_dir` whose process is gone (killed), first
    putting back the previous export that a killed `force` export had moved aside."""
    pattern = re.compile(rf"^{re.escape(temporary_prefix(out_dir))}(\d+)\.[^.]+\.tmp$")
    if not out_dir.parent.is_dir():
        return
    for stale in out_dir.parent.iterdir():
        match = pattern.match(stale.name)
        if not match or not stale.is_dir() or _process_alive(int(match.group(1))):
            continue
        previous = stale / "previous"
        if previous.is_dir() and not out_dir.exists():
            previous.rename(out_dir)
            log.warning("%s: put back the export that an interrupted export moved aside", out_dir)
        shutil.rmtree(stale, ignore_errors=True)
        log.info("%s: removed %s, left by an interrupted export", out_dir.parent, stale.name)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def publish(staging: Path, out_dir: Path, workdir: Path, force: bool) -> None:
    """Rename the finished export into place. With `force`, an earlier export there is
    moved aside first (checked again now) and put back if the rename fails; without it,
    a folder that appeared meanwhile makes the rename, and so the export, fail."""
    previous = None
    if force and (out_dir.exists() or out_dir.is_symlink()):
        if not is_export(out_dir):
            raise ExportError(f"{out_dir}: is no longer an export (no {EXPORT_INFO}); not replaced")
        previous = workdir / "previous"
        out_dir.rename(previous)
    elif out_dir.exists() or out_dir.is_symlink():
        raise FileExistsError(f"{out_dir}: created by another process meanwhile; not replaced")
    try:
        staging.rename(out_dir)
    except OSError as e:
        if previous is not None and not out_dir.exists():
            previous.rename(out_dir)
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise FileExistsError(
                f"{out_dir}: created by another process meanwhile; not replaced"
            ) from None
        raise
    except BaseException:
        if previous is not None and not out_dir.exists():
            previous.rename(out_dir)
        raise


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
    exporter); raises ExportError naming the file if the folder is not one."""
    info_path = Path(path) / EXPORT_INFO
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path}: not an nmt {engine} export (no {EXPORT_INFO})") from None
    if info.get("format") != fmt or info.get("format_version") != version:
        raise ExportError(
            f"{info_path}: unsupported export format {info.get('format')!r} "
            f"version {info.get('format_version')!r} (this nmt reads {fmt} {version})"
        )
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
