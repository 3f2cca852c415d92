"""Model weights as safetensors: compact, data only, and self-describing.

A weights folder holds `model.safetensors` (the model's tensors, float16 by default, tied
weights stored once) whose metadata carries the model config, the tokenizer's sha256, the
toolkit version and the provenance given when it was written, and the SentencePiece model
`spm.model`, in the folder or in its parent (members of one ensemble share one tokenizer).
It is what `models/` keeps in git: no pickle, so reading it can never run code, and a 2.3M
parameter model takes 4.7 MB.

`read_weights` returns the same state as `nmt.checkpoint.load_checkpoint` (float32 tensors,
`model_config`, `tokenizer_model`, `tokenizer_sha256`), so every command that takes a
checkpoint takes a weights folder or its `model.safetensors` too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nmt import __version__
from nmt.config import ModelConfig, from_dict
from nmt.fileio import errors_naming, file_mode

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "spm.model"
FORMAT = "nmt-weights"
FORMAT_VERSION = 1
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class WeightsError(RuntimeError):
    """A weights file is missing, unreadable, or does not match its config or tokenizer."""


def write_weights(
    state: dict[str, Any],
    out_dir: str | Path,
    dtype: str = "float16",
    provenance: dict[str, Any] | None = None,
    tokenizer: bool = True,
) -> Path:
    """Write the model of checkpoint `state` to `out_dir/model.safetensors` (and its
    tokenizer to `out_dir/spm.model`, unless `tokenizer` is false: a member of an ensemble
    whose parent folder holds the shared one). Returns the weights file's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors, tied = {}, []
    model = state["model"]
    shared = {}  # tied name -> the name stored
    if state["model_config"].get("tie_embeddings"):  # tied, even where averaging untied them
        for name in ("tgt_embed.weight", "output.weight"):
            if name in model and torch.equal(model[name], model["embed.weight"]):
                shared[name] = "embed.weight"
    seen: dict[int, str] = {}
    for name, tensor in model.items():
        source = shared.get(name) or seen.get(tensor.data_ptr())
        if source is not None and tensor.is_floating_point():  # tied: stored once
            tied.append([name, source])
            continue
        seen[tensor.data_ptr()] = name
        cast = tensor.to(DTYPES[dtype]) if tensor.is_floating_point() else tensor
        tensors[name] = cast.contiguous()
    # Every shape setting written out, defaults included (max_positions sizes a positional
    # table that no tensor here stores): the file means one model whatever the defaults.
    config = dataclasses.asdict(from_dict(ModelConfig, state["model_config"], "model."))
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "nmt_version": __version__,
        "dtype": dtype,
        "model_config": json.dumps(config, sort_keys=True),
        "tokenizer_sha256": state["tokenizer_sha256"],
        "tied": json.dumps(tied),
        "provenance": json.dumps(provenance or {}, sort_keys=True),
    }
    path = out_dir / WEIGHTS_FILE
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as e:  # the library's I/O error: "... (os error 28)", no path
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise WeightsError(f"{path}: cannot be written ({e})") from None
        raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from None
    os.chmod(path, file_mode())  # as `open` would make it (the library's file is 0600)
    if tokenizer:
        with errors_naming(out_dir / TOKENIZER_FILE):
            (out_dir / TOKENIZER_FILE).write_bytes(state["tokenizer_model"])
    return path


def is_weights(path: str | Path) -> bool:
    path = Path(path)
    return path.name == WEIGHTS_FILE or (path / WEIGHTS_FILE).is_file()


def read_weights(path: str | Path) -> dict[str, Any]:
    """The checkpoint-like state of a weights folder or its `model.safetensors`."""
    path = Path(path)
    file = path if path.name == WEIGHTS_FILE else path / WEIGHTS_FILE
    if not file.is_file():
        raise WeightsError(f"{file}: weights file not found")
    try:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{file}: not a readable safetensors file ({e})") from None
    if metadata.get("format") != FORMAT:
        raise WeightsError(f"{file}: not an nmt weights file (metadata format is not {FORMAT})")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise WeightsError(
            f"{file}: weights format {metadata.get('format_version')} is not supported by "
            f"nmt {__version__} (format {FORMAT_VERSION})"
        )
    dtype = _metadata(file, metadata, "dtype")
    if dtype not in DTYPES:
        raise WeightsError(f"{file}: metadata dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    for name, tensor in tensors.items():  # a relabelled tensor (I16 bytes) must not load
        if tensor.dtype != DTYPES[dtype]:
            raise WeightsError(
                f"{file}: tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')}, "
                f"not the {dtype} of the file's metadata"
            )
    model = {k: v.float() for k, v in tensors.items()}
    for pair in _metadata_json(file, metadata, "tied", list):
        pair_ok = isinstance(pair, list) and len(pair) == 2
        if not (pair_ok and all(isinstance(n, str) for n in pair)):
            raise WeightsError(f"{file}: metadata tied holds {pair!r}, not a [name, source] pair")
        name, source = pair
        if source not in tensors:
            raise WeightsError(
                f"{file}: metadata tied names {source!r} as the source of {name!r}, and the "
                "file holds no such tensor"
            )
        model[name] = model[source]
    sha256 = _metadata(file, metadata, "tokenizer_sha256")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise WeightsError(f"{file}: metadata tokenizer_sha256 {sha256[:80]!r} is not a sha256")
    return {
        "format_version": 1,
        "nmt_version": _metadata(file, metadata, "nmt_version"),
        "model_config": _metadata_json(file, metadata, "model_config", dict),
        "model": model,
        "tokenizer_model": _find_tokenizer(file.parent, sha256),
        "tokenizer_sha256": sha256,
        "weights_dtype": dtype,
        "provenance": _metadata_json(file, metadata, "provenance", dict),
    }


def _metadata(file: Path, metadata: dict[str, str], key: str) -> str:
    """The metadata entry `key`, which `write_weights` always writes."""
    if key not in metadata:
        raise WeightsError(f"{file}: metadata has no {key} (not written by nmt's write_weights)")
    return metadata[key]


def _metadata_json(file: Path, metadata: dict[str, str], key: str, kind: type) -> Any:
    """The metadata entry `key`, a JSON value of type `kind` (list or dict)."""
    try:
        value = json.loads(_metadata(file, metadata, key))
    except ValueError as e:
        raise WeightsError(f"{file}: metadata {key} is not valid JSON ({e})") from None
    if not isinstance(value, kind):
        found, wanted = type(value).__name__, kind.__name__
        raise WeightsError(f"{file}: metadata {key} is a JSON {found}, not a {wanted}")
    return value


def _find_tokenizer(folder: Path, sha256: str) -> bytes:
    """The folder's `spm.model`, else its parent's; it must have the recorded sha256."""
    for candidate in (folder / TOKENIZER_FILE, folder.parent / TOKENIZER_FILE):
        if candidate.is_file():
            data = candidate.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha256:
                raise WeightsError(
                    f"{candidate}: does not match the tokenizer sha256 of {folder / WEIGHTS_FILE}"
                )
            return data
    raise WeightsError(f"{folder}: no {TOKENIZER_FILE} here or in the parent folder")
