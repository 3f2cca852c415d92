"""The device, the autocast precision, the optimizer and the learning-rate schedule of a
run: what the trainer and the pipeline's speed probe set up alike."""

from __future__ import annotations

import math

import torch

from nmt.config import ConfigError
from nmt.model import Transformer


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for float32."""
    if name == "fp32":
        return None
    if name == "fp16":
        return torch.float16
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def make_optimizer(model: Transformer, c) -> torch.optim.Optimizer:
    """AdamW; weight decay on weight matrices only (not biases or LayerNorm, BERT style)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": c.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.adam_eps, fused=False)


def lr_schedule(name: str, warmup: int, max_steps: int):
    """The learning-rate factor of update `step` (1-based): a linear warmup to the peak over
    `warmup` updates, then `inverse_sqrt` (1/sqrt(step) decay; Vaswani et al. 2017),
    `linear` (down to 0 at `max_steps`; BERT fine-tuning) or `constant`."""

    def factor(step: int) -> float:
        step = max(step, 1)
        if step < warmup:
            return step / warmup
        if name == "inverse_sqrt":
            return math.sqrt(warmup / step) if warmup else 1.0
        if name == "linear":
            return max(0.0, (max_steps - step) / max(max_steps - warmup, 1))
        return 1.0

    return factor
