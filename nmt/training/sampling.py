"""Scheduled sampling for Transformers: the two-pass decoder of Mihaylova & Martins (2019).

Teacher forcing trains the decoder on gold prefixes, but at inference it reads its own
predictions. Scheduled sampling (Bengio et al. 2015) closes the gap: a first pass over the
batch, without gradients and without dropout, predicts every target position from the gold
prefix; then each gold decoder input after BOS is replaced, with probability `p`, by the
first pass's prediction for that position, and the second (training) pass reads the mix.
The loss is still against the gold targets.

`p` grows with the update number (`mixing_probability`), from 0 at `start_step` towards
`max_prob`. Bengio et al. define the probability of *keeping* the gold token, eps_i; here
`p = max_prob * (1 - eps_i)`:

    constant          eps = 0                          (p = max_prob from start_step on)
    linear            eps = max(0, 1 - i / k)          (k: updates to reach max_prob)
    exponential       eps = k ** i                     (k < 1)
    inverse_sigmoid   eps = k / (k + exp(i / k))       (k >= 1)

with i the updates since `start_step`. At p = 0 no first pass runs and no random number is
drawn: training is exactly teacher forcing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nmt.config import ScheduledSamplingConfig
from nmt.vocab import PAD


def mixing_probability(config: ScheduledSamplingConfig, step: int) -> float:
    """The probability of feeding the model's own prediction at update `step` (1-based)."""
    if not config.enabled or step <= config.start_step:
        return 0.0
    i = step - config.start_step
    if config.schedule == "constant":
        keep = 0.0
    elif config.schedule == "linear":
        keep = max(0.0, 1.0 - i / config.k)
    elif config.schedule == "exponential":
        keep = config.k**i
    else:  # inverse_sigmoid; exp() overflows past ~709
        keep = config.k / (config.k + math.exp(min(i / config.k, 700.0)))
    return config.max_prob * (1.0 - keep)


def mix_inputs(tgt_in: Tensor, logits: Tensor, prob: float, predictions: str = "argmax") -> Tensor:
    """Decoder inputs (B, T) with each gold token after BOS replaced, with probability
    `prob`, by the first pass's prediction for that position: `logits` (B, T, V) at
    position t-1 predicts the token at t. Padding stays padding."""
    if predictions == "argmax":
        predicted = logits.argmax(dim=-1)
    else:
        probs = torch.softmax(logits.float(), dim=-1)
        predicted = torch.multinomial(probs.view(-1, probs.size(-1)), 1).view(probs.shape[:-1])
    own = torch.cat([tgt_in[:, :1], predicted[:, :-1]], dim=1)
    replace = torch.rand(tgt_in.shape, device=tgt_in.device) < prob
    replace[:, 0] = False
    replace &= tgt_in != PAD
    return torch.where(replace, own, tgt_in)


@torch.no_grad()
def first_pass(forward, model: torch.nn.Module, src: Tensor, tgt_in: Tensor) -> Tensor:
    """Teacher-forced logits from `forward` (the model, or its compiled form) in eval mode
    (no dropout, no gradients); the model is back in training mode afterwards."""
    model.eval()
    try:
        return forward(src, tgt_in)
    finally:
        model.train()
