"""Checkpoints that describe themselves: weights plus model config, run config, tokenizer
hash and toolkit version. Written atomically; verified on load; averaged on request.

A checkpoint is data, never code: it holds only tensors and plain values (numbers, strings,
lists, dicts) and is read with `torch.load(weights_only=True)`, whose unpickler builds
nothing else. A file that asks for any other object (a pickle whose `__reduce__` would run
a command, say) is refused before anything in it runs. Files written before this rule
stored the torch version as `torch.torch_version.TorchVersion`, a `str` subclass; that one
class is allowed, so they load as they are.

Verification on load: that no record is compressed or declares more bytes than the file
holds (a zip bomb, refused before anything is inflated), the CRC-32 of every record of the
file (torch.save writes a zip archive with CRCs that torch.load does not check), the format
version, and that the weights have the names and shapes their model config implies, layer
counts checked before any module is built and max_positions within model.MAX_POSITIONS.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from nmt import __version__
from nmt.config import ConfigError, ModelConfig, from_dict
from nmt.decoding import is_out_of_memory, out_of_memory
from nmt.fileio import atomic_torch_save
from nmt.model import Transformer
from nmt.weights import WEIGHTS_FILE, WeightsError, read_weights

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

# What only a resume needs; an averaged or exported model leaves it out.
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "data", "train_state")

# The only non-plain object older checkpoints hold: `torch.__version__` (a str subclass).
_ALLOWED_GLOBALS = [torch.torch_version.TorchVersion]

# Preference order of checkpoints inside a run folder.
RUN_CHECKPOINTS = ("averaged.pt", "best.pt", "last.pt")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, unwritable, or from an incompatible format."""


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint of a .pt path or a run folder: the one the run's summary.json chose
    (`checkpoint`: the averaged model, or best.pt when averaging scored lower on dev), else
    the first of RUN_CHECKPOINTS there; in a weights folder, its `model.safetensors`. The
    chosen file must lie in the run folder: a summary that points elsewhere (`../other.pt`)
    is refused, not followed."""
    path = Path(path)
    if path.is_file():
        return path
    summary = path / "summary.json"
    try:
        chosen = json.loads(summary.read_text(encoding="utf-8")).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        chosen = None
    if chosen:
        target = path / str(chosen)
        if Path(str(chosen)).name != chosen or not target.resolve().is_relative_to(path.resolve()):
            raise CheckpointError(
                f"{summary}: checkpoint {chosen!r} is not a file of the run folder; refused"
            )
        if target.is_file():
            return target
    for name in (*RUN_CHECKPOINTS, WEIGHTS_FILE):
        if (path / name).is_file():
            return path / name
    raise CheckpointError(
        f"{path}: no checkpoint found (looked for {', '.join(RUN_CHECKPOINTS)}, {WEIGHTS_FILE})"
    )


def save_checkpoint(
    path: str | Path,
    model: Transformer,
    run_config: dict[str, Any],
    tokenizer_sha256: str,
    **extra: Any,
) -> None:
    """Write `model` with its config, run config and tokenizer hash to `path` (atomically).
    Weights holding NaN or infinity (a diverged run) are refused, leaving the file already
    at `path`, if any, as it was."""
    weights = model.state_dict()  # tied weights stay one tensor in the file
    bad = non_finite(weights)
    if bad:
        raise CheckpointError(
            f"{path}: not written: the weights hold NaN or infinity ({_some(bad)}); "
            "the file already there, if any, is left as it was"
        )
    extra.setdefault("torch_version", str(torch.__version__))
    state = {
        "format_version": FORMAT_VERSION,
        "nmt_version": __version__,
        "model_config": run_config["model"],
        "run_config": run_config,
        "tokenizer_sha256": tokenizer_sha256,
        "model": weights,
        **extra,
    }
    atomic_torch_save(state, path)


def non_finite(weights: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors of `weights` that hold NaN or infinity; one
    device synchronisation for all of them."""
    floats = {k: v for k, v in weights.items() if v.is_floating_point()}
    if not floats:
        return []
    finite = torch.stack([torch.isfinite(v).all() for v in floats.values()])
    if bool(finite.all()):
        return []
    return [k for k, ok in zip(floats, finite.tolist(), strict=True) if not ok]


def _some(names: list[str]) -> str:
    return names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint written by `save_checkpoint` (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":  # a weights folder's model (nmt.weights)
        try:
            state = read_weights(path)
        except WeightsError as e:
            raise CheckpointError(str(e)) from None
        _check_weights(path, state)
        return state
    _check_archive(path)
    try:
        with torch.serialization.safe_globals(_ALLOWED_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused an object: never built
        raise CheckpointError(
            f"{path}: not an nmt checkpoint: it contains code objects{_refused_global(e)}; "
            "checkpoints are loaded as data only, and this one was not loaded"
        ) from None
    except Exception as e:  # a torn or foreign file: say which, not where in pickle it broke
        if is_out_of_memory(e):
            raise CheckpointError(out_of_memory(path)) from None
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


def _refused_global(error: Exception) -> str:
    """` (GLOBAL os.system)` from the message of weights_only's refusal, if it names one."""
    match = re.search(r"GLOBAL ([\w.]+)", str(error))
    return f" ({match.group(0)})" if match else ""


def _check_archive(path: Path) -> None:
    """Refuse a zip bomb from the archive's directory alone, before any record is read:
    torch.save stores every record uncompressed, so a compressed record, or records that
    declare more bytes than the file holds (overlapping ones), can only make torch.load
    allocate more than the file justifies (a 4.7 MB file inflating to 4 GiB took 33 s and
    4.3 GB of memory to refuse). Then the CRC-32 of every record, which torch.load skips."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            for r in records:
                if r.compress_type != zipfile.ZIP_STORED or r.file_size != r.compress_size:
                    raise CheckpointError(
                        f"{path}: record {r.filename} is compressed ({r.compress_size:,} "
                        f"bytes inflating to {r.file_size:,}); torch.save never compresses: "
                        "refused unread as a zip bomb"
                    )
            declared = sum(r.file_size for r in records)
            if declared > size:
                raise CheckpointError(
                    f"{path}: its records declare {declared:,} bytes, more than the file's "
                    f"{size:,}; refused unread as a zip bomb"
                )
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
    # The layer counts first: even on the meta device each layer is Python objects, so a
    # config asking a 2-layer file for a million layers would cost minutes and gigabytes.
    for key, stack in (("enc_layers", "encoder."), ("dec_layers", "decoder.")):
        held = len({str(k).split(".")[1] for k in state["model"] if str(k).startswith(stack)})
        if getattr(config, key) != held:
            raise CheckpointError(
                f"{path}: model_config.{key} is {getattr(config, key):,} but the weights "
                f"hold {held} layers there"
            )
    try:  # the model refuses a positional table beyond model.MAX_POSITIONS
        with torch.device("meta"):
            expected = {k: v.shape for k, v in Transformer(config).state_dict().items()}
    except ConfigError as e:
        raise CheckpointError(f"{path}: model_config: {e}") from None
    found = {k: v.shape for k, v in state["model"].items()}
    if found != expected:
        missing = sorted(expected.keys() - found.keys())
        extra = sorted(found.keys() - expected.keys())
        shapes = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
        raise CheckpointError(
            f"{path}: weights do not match model_config (missing {missing[:3]}, "
            f"unexpected {extra[:3]}, other shape {shapes[:3]})"
        )
    for key, tensor in state["model"].items():  # dtype with shape: integers are no weights
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            dtype = getattr(tensor, "dtype", type(tensor).__name__)
            raise CheckpointError(f"{path}: tensor {key!r} is {dtype}, not floating point")


def model_from_checkpoint(state: dict[str, Any], source: str | Path | None = None) -> Transformer:
    """The model of a loaded checkpoint. Out of memory building it, with the checkpoint's
    path as `source`, the one-line error counts what building allocates (the positional
    table included), not only the file."""
    config = from_dict(ModelConfig, state["model_config"], "model.")
    try:
        model = Transformer(config)
        model.load_state_dict(state["model"])
    except (MemoryError, RuntimeError) as e:  # PyTorch's allocators raise RuntimeError
        if source is None or not is_out_of_memory(e):
            raise
        built = Transformer.build_bytes(config)
        raise CheckpointError(out_of_memory(source, built=built)) from None
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
        if s.get("tokenizer_model") != ref.get("tokenizer_model"):
            raise CheckpointError(
                f"{p}: tokenizer differs from {paths[-1]}'s; averaging models with different "
                "vocabularies gives a meaningless model"
            )
        bad = non_finite(s["model"])
        if bad:
            raise CheckpointError(f"{p}: weights hold NaN or infinity ({_some(bad)}); not averaged")
    avg: dict[str, torch.Tensor] = {}
    done: dict[int, torch.Tensor] = {}  # tied weights (one storage) averaged once, kept tied
    for key, value in ref["model"].items():
        if value.data_ptr() in done:
            avg[key] = done[value.data_ptr()]
        elif value.is_floating_point():
            avg[key] = (
                sum(s["model"][key].double() for s in states).div(len(states)).to(value.dtype)
            )
        else:
            avg[key] = value
        done[value.data_ptr()] = avg[key]
    out = {k: v for k, v in ref.items() if k not in RESUME_KEYS}
    out["model"] = avg
    out["averaged_from"] = [str(p) for p in paths]
    return out


def write_average(paths: list[str | Path], output: str | Path, force: bool = False) -> Path:
    """Average `paths` into the new checkpoint `output`. An existing `output` is replaced
    only with `force` and only if nmt-average made it (never one of `paths`, never another
    file: `nmt.outputs`); without `force` the write fails if `output` appears meanwhile."""
    from nmt.outputs import claim

    out = claim(output, "nmt-average", inputs=paths, force=force, folder=False)
    averaged = average_checkpoints(paths)
    buffer = io.BytesIO()
    torch.save(averaged, buffer)
    return out.write_bytes(buffer.getvalue())
