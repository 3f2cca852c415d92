"""Fine-tuning: a run that starts from a trained model's weights (`train.init_from`).

Like OpenNMT-py's `train_from` with `reset_optim: all` or fairseq's `--restore-file
--reset-optimizer --reset-lr-scheduler --reset-dataloader`: the parent's weights, a fresh
optimizer, schedule and data order, step 0. The parent is any form the toolkit saves: a run
folder (its chosen checkpoint), a `.pt` checkpoint, a weights folder or its
`model.safetensors`. It is read as data (nmt.checkpoint.load_checkpoint), never unpickled.

The child keeps the parent's tokenizer (another one is an error) and architecture (a
mismatch names the key; dropout may differ). Its checkpoints, summary and exports record
the parent: the file read and its sha256.

Shrink and fine-tune (Shleifer & Rush 2020, "Pre-trained Summarization Distillation"): a
child with fewer encoder or decoder layers than its parent starts from the layers that
`init_encoder_layers` / `init_decoder_layers` name, in order, and everything else (embeddings,
final norms) from the parent; e.g. a 4+1 student from a 4+4 teacher with
`init_decoder_layers: [0]`. Distilled students so start from what the teacher has learnt
instead of from random weights.

Freezing (`freeze_embeddings`, `freeze_encoder`, for the first `freeze_steps` updates or
throughout) turns off gradients of those parameters, which the optimizer then leaves
untouched (AdamW skips parameters without a gradient, weight decay included). With tied
embeddings, freezing the embeddings freezes the output layer too: it is the same matrix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nmt.checkpoint import find_checkpoint, load_checkpoint
from nmt.config import ConfigError, ModelConfig, TrainConfig
from nmt.fileio import file_sha256
from nmt.model import Transformer
from nmt.tokenizer import Tokenizer

# The keys that fix a model's tensors and computation; dropout may change when fine-tuning.
ARCHITECTURE_KEYS = (
    "vocab_size",
    "d_model",
    "heads",
    "ffn",
    "enc_layers",
    "dec_layers",
    "activation",
    "pre_norm",
    "layer_norm_eps",
    "max_positions",
    "tie_embeddings",
)


@dataclass(frozen=True)
class Parent:
    """The model a fine-tuning run starts from."""

    path: Path  # the checkpoint or weights file read
    sha256: str
    state: dict[str, Any]

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self.state["tokenizer_model"], f"{self.path}:tokenizer")

    @property
    def step(self) -> int | None:
        """The parent's update count: a checkpoint's own, or the one a weights file records."""
        if "step" in self.state:
            return self.state["step"]
        return (self.state.get("provenance") or {}).get("step")

    def provenance(self) -> dict[str, Any]:
        """What every checkpoint, summary and export of the child records."""
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "step": self.step,
            "tokenizer_sha256": self.state["tokenizer_sha256"],
        }


def parent_checkpoint(spec: str | Path) -> Path:
    """The file `train.init_from` names: a run folder's chosen checkpoint, a weights
    folder's model.safetensors, or the file itself."""
    if not Path(spec).exists():
        raise ConfigError(f"train.init_from: {spec}: no such run folder, checkpoint or weights")
    return find_checkpoint(spec)


def load_parent(spec: str | Path) -> Parent:
    """The parent named by `train.init_from`."""
    path = parent_checkpoint(spec)
    return Parent(path, file_sha256(path), load_checkpoint(path))


def check_tokenizer(parent: Parent, tokenizer: Tokenizer, key: str) -> None:
    """A child's tokenizer must be its parent's: another vocabulary makes its embeddings
    meaningless."""
    expected = parent.state["tokenizer_sha256"]
    if tokenizer.sha256() != expected:
        raise ConfigError(
            f"{key}: {tokenizer.source} (sha256 {tokenizer.sha256()[:12]}) is not the tokenizer "
            f"of train.init_from {parent.path} (sha256 {expected[:12]}); a fine-tuned model "
            "keeps its parent's tokenizer: leave tokenizer.model empty to use it"
        )


LayerMaps = dict[str, tuple[int, ...]]  # "encoder"/"decoder" -> the parent's layer per child's


def layer_maps(parent: Parent, model: ModelConfig, train: TrainConfig) -> LayerMaps:
    """For the encoder and decoder, the parent's layer each of the child's starts from: all of
    them in order unless `train.init_{encoder,decoder}_layers` names some (checked against
    both models' depths)."""
    maps = {}
    for stack, key in (("encoder", "enc_layers"), ("decoder", "dec_layers")):
        chosen = getattr(train, f"init_{stack}_layers")
        theirs = parent.state["model_config"][key]
        if not chosen:
            maps[stack] = tuple(range(getattr(model, key)))
            continue
        name = f"train.init_{stack}_layers"
        if len(chosen) != getattr(model, key):
            raise ConfigError(
                f"{name}: names {len(chosen)} layers, but model.{key} is {getattr(model, key)}"
            )
        if max(chosen) >= theirs:
            raise ConfigError(
                f"{name}: layer {max(chosen)} is out of range: train.init_from {parent.path} "
                f"has {theirs} {stack} layers (0 to {theirs - 1})"
            )
        maps[stack] = tuple(chosen)
    return maps


def parent_weights(parent: Parent, model: ModelConfig, train: TrainConfig) -> dict[str, Any]:
    """The child's initial state dict: the parent's tensors, its encoder and decoder layers
    picked by `layer_maps` (child layer j <- parent layer maps[stack][j])."""
    check_architecture(parent, model, train)
    maps = layer_maps(parent, model, train)
    weights = {}
    for name, tensor in parent.state["model"].items():
        stack, _, rest = name.partition(".")
        if stack not in maps:
            weights[name] = tensor
            continue
        index, _, tail = rest.partition(".")
        for j, chosen in enumerate(maps[stack]):
            if chosen == int(index):
                weights[f"{stack}.{j}.{tail}"] = tensor
    return weights


def check_architecture(parent: Parent, config: ModelConfig, train: TrainConfig) -> None:
    """The child's model section must describe the parent's architecture, but for the depth
    of a stack whose layers `train` picks (shrink and fine-tune)."""
    ours, theirs = asdict(config), parent.state["model_config"]
    shrunk = {"enc_layers": train.init_encoder_layers, "dec_layers": train.init_decoder_layers}
    for key in ARCHITECTURE_KEYS:
        if shrunk.get(key):
            continue
        if key in theirs and ours[key] != theirs[key]:
            raise ConfigError(
                f"model.{key}: {ours[key]!r} in the config, but train.init_from {parent.path} "
                f"has {theirs[key]!r}; a fine-tuned model keeps its parent's architecture"
            )


def frozen_parameters(model: Transformer, config: TrainConfig) -> list[torch.nn.Parameter]:
    """The parameters `config` freezes (tied ones once)."""
    params: list[torch.nn.Parameter] = []
    if config.freeze_embeddings:
        params += [model.embed.weight, model.tgt_embed.weight, model.output.weight]
    if config.freeze_encoder:
        params += list(model.encoder.parameters())
        if model.enc_norm is not None:
            params += list(model.enc_norm.parameters())
    unique = {id(p): p for p in params}
    return list(unique.values())


def apply_freezing(model: Transformer, config: TrainConfig, step: int) -> None:
    """Freeze what `config` freezes before update `step` (0-based): throughout when
    `freeze_steps` is 0, else for the first `freeze_steps` updates."""
    frozen = config.freeze_steps == 0 or step < config.freeze_steps
    for p in frozen_parameters(model, config):
        p.requires_grad_(not frozen)


def describe_start(c: TrainConfig) -> str:
    """What a fine-tuning run takes from its parent and freezes, for its first log line:
    "; from the parent's encoder layers [0, 1]; embeddings frozen for every update"."""
    picked = [
        f"{stack} layers {list(getattr(c, f'init_{stack}_layers'))}"
        for stack in ("encoder", "decoder")
        if getattr(c, f"init_{stack}_layers")
    ]
    note = f"; from the parent's {' and '.join(picked)}" if picked else ""
    frozen = [n for n in ("embeddings", "encoder") if getattr(c, f"freeze_{n}")]
    if not frozen:
        return note
    span = f"the first {c.freeze_steps} updates" if c.freeze_steps else "every update"
    return f"{note}; {' and '.join(frozen)} frozen for {span}"
