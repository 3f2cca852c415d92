"""The training loss: label-smoothed cross-entropy as one autograd Function.

Autograd's backward of the composed formula (log_softmax, gather, mean, weighted sum, mask)
makes several full passes over the (tokens, V) logits and allocates as many temporaries: the
mean's broadcast gradient, the gather's scatter into zeros, their sum, log_softmax's own
backward. The gradient has a closed form, so `LabelSmoothedLoss` computes it in one buffer
from the log-probabilities its forward kept (issue 35: float32 training speed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from nmt.vocab import PAD


class LabelSmoothedLoss(torch.autograd.Function):
    """Summed label-smoothed loss and summed NLL over non-pad targets, and their count.

    Forward: log-probabilities in float32 at least (bf16/fp16 logits are upcast, float64
    stays float64). Backward, with g the incoming gradient of the summed loss:

        d loss / d logits = g * (softmax(logits) - ((1 - eps) * onehot(target) + eps / V))

    for non-pad rows, zero for pad rows, cast back to the logits' dtype. The NLL and the
    count are for logging: non-differentiable outputs (backward through them raises).
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, logits: Tensor, target: Tensor, smoothing: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        vocab = logits.size(-1)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        lprobs = torch.log_softmax(logits.reshape(-1, vocab), dim=-1, dtype=dtype)  # (N, V)
        target = target.reshape(-1)  # (N,)
        keep = target != PAD
        nll = -lprobs.gather(1, target[:, None]).squeeze(1)
        smooth = -lprobs.mean(dim=-1)
        loss = (1.0 - smoothing) * nll + smoothing * smooth
        # where, not a product: a NaN in a pad row must not reach the sums
        loss_sum = torch.where(keep, loss, 0.0).sum()
        nll_sum = torch.where(keep, nll, 0.0).sum()
        count = keep.sum()
        ctx.mark_non_differentiable(nll_sum, count)
        ctx.save_for_backward(lprobs, target)
        ctx.smoothing, ctx.logits_shape, ctx.logits_dtype = smoothing, logits.shape, logits.dtype
        return loss_sum, nll_sum, count

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, grad_loss: Tensor, _grad_nll: Tensor, _grad_count: Tensor
    ) -> tuple[Tensor, None, None]:
        lprobs, target = ctx.saved_tensors
        eps, vocab = ctx.smoothing, lprobs.size(-1)
        grad = lprobs.exp()  # softmax, (N, V); the saved buffer stays (retain_graph)
        if eps:
            grad.sub_(eps / vocab)
        hit = torch.full_like(target[:, None], -(1.0 - eps), dtype=grad.dtype)
        grad.scatter_add_(1, target[:, None], hit)  # the target's -(1 - eps)
        grad.mul_(torch.where(target != PAD, grad_loss, 0.0)[:, None])  # g, 0 for pad rows
        return grad.to(ctx.logits_dtype).view(ctx.logits_shape), None, None


def label_smoothed_loss(
    logits: Tensor, target: Tensor, smoothing: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Summed label-smoothed loss and summed NLL over non-pad targets, and their count.

    With log-probabilities lp = log_softmax(logits) over V pieces, each non-pad target t
    adds (1 - smoothing) * -lp[t] + smoothing * mean(-lp) to the loss and -lp[t] to the NLL.
    `logits` is (B, T, V) or (N, V), `target` (B, T) or (N,) with PAD where nothing is
    predicted. Only the loss carries a gradient (`LabelSmoothedLoss`); the NLL is for logging.
    """
    return LabelSmoothedLoss.apply(logits, target, smoothing)


def composed_loss(
    logits: Tensor, target: Tensor, smoothing: float
) -> tuple[Tensor, Tensor, Tensor]:
    """`label_smoothed_loss` as composed operations that autograd differentiates: what the
    trainer used before `LabelSmoothedLoss`, kept as its reference (tests/test_loss.py,
    benchmarks/loss_speed.py)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    lprobs = F.log_softmax(logits.to(dtype), dim=-1).view(-1, logits.size(-1))
    target = target.reshape(-1)
    keep = target != PAD
    nll = -lprobs.gather(1, target[:, None]).squeeze(1)
    smooth = -lprobs.mean(dim=-1)
    loss = (1.0 - smoothing) * nll + smoothing * smooth
    return loss[keep].sum(), nll[keep].sum(), keep.sum()
