"""Several models of one vocabulary decoding as one (the WNGT and WMT teachers were ensembles
of 4): at every step the next-token distribution is the mean of the members' probabilities,
as in fairseq's `EnsembleModel` and Marian's ensembles. `Ensemble` has the decoding
interface of `nmt.model.Transformer` (`config`, `init_state`, `decode_step`), so greedy and
beam search (`nmt.search`) and the PyTorch translator take it as they take one model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nmt.config import replace
from nmt.model import DecoderState, Transformer


class EnsembleState:
    """The members' decoder states, selected (beam reordering, finished rows) together."""

    def __init__(self, states: list[DecoderState]):
        self.states = states

    def select(self, index: Tensor) -> None:
        for state in self.states:
            state.select(index)


class Ensemble(nn.Module):
    """Average the members' next-token probabilities (log of the mean, not mean of logs)."""

    def __init__(self, models: list[Transformer]):
        super().__init__()
        if len(models) < 2:
            raise ValueError("an ensemble needs at least two models")
        sizes = {m.config.vocab_size for m in models}
        if len(sizes) > 1:
            raise ValueError(f"ensemble members have different vocabularies (sizes {sizes})")
        self.members = nn.ModuleList(models)
        # The shortest position table bounds the ensemble's inputs and outputs.
        self.config = replace(
            models[0].config, max_positions=min(m.config.max_positions for m in models)
        )

    def num_parameters(self) -> int:
        return sum(m.num_parameters() for m in self.members)

    def init_state(self, src: Tensor) -> EnsembleState:
        return EnsembleState([m.init_state(src) for m in self.members])

    def decode_step(self, tokens: Tensor, state: EnsembleState) -> Tensor:
        """Log of the members' mean probability of each next token, (B, V)."""
        logps = torch.stack(
            [m.decode_step(tokens, s) for m, s in zip(self.members, state.states, strict=True)]
        )
        return torch.logsumexp(logps, dim=0) - math.log(len(self.members))
