"""Validation during training: dev loss and perplexity, and greedy dev BLEU/chrF with their
sacrebleu signatures."""

from __future__ import annotations

import math
from typing import Any

import torch

from nmt.backends.pytorch import TorchTranslator
from nmt.data.batching import collate, make_batches
from nmt.data.corpus import EncodedCorpus
from nmt.model import Transformer
from nmt.scoring import Scores, score
from nmt.tokenizer import Tokenizer
from nmt.training.loss import label_smoothed_loss


@torch.no_grad()
def validate(
    model: Transformer,
    valid: EncodedCorpus,
    valid_text: tuple[list[str], list[str]] | None,
    tokenizer: Tokenizer,
    batch_tokens: int,
    label_smoothing: float,
    device: torch.device,
) -> dict[str, Any]:
    """Dev loss and perplexity; with `valid_text` (sources, references) also greedy BLEU and
    chrF. The model is left in training mode."""
    model.eval()
    loss_sum = nll_sum = tokens = 0.0
    for idx in make_batches(valid.src_lengths, valid.tgt_lengths, batch_tokens, seed=0, epoch=0):
        src, tgt_in, tgt_out = (t.to(device) for t in collate([valid.pair(int(i)) for i in idx]))
        loss, nll, ntok = label_smoothed_loss(model(src, tgt_in), tgt_out, label_smoothing)
        loss_sum, nll_sum, tokens = loss_sum + float(loss), nll_sum + float(nll), tokens + int(ntok)
    result: dict[str, Any] = {
        "valid_loss": loss_sum / tokens,
        "valid_ppl": math.exp(min(nll_sum / tokens, 50.0)),
    }
    if valid_text is not None:
        s = greedy_scores(model, tokenizer, *valid_text, batch_tokens, device)
        result.update(
            valid_bleu=round(s.bleu, 2),
            valid_chrf=round(s.chrf, 2),
            bleu_signature=s.bleu_signature,
        )
    model.train()
    return result


def greedy_scores(
    model: Transformer,
    tokenizer: Tokenizer,
    sources: list[str],
    references: list[str],
    batch_tokens: int,
    device: torch.device | str = "cpu",
) -> Scores:
    """BLEU and chrF2 of the model's greedy translations of `sources` (dev scoring)."""
    translator = TorchTranslator(model, tokenizer, str(device))
    hyps = translator.translate(sources, beam_size=1, max_batch_tokens=batch_tokens)
    return score(hyps, references)
