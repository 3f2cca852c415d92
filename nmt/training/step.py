"""One optimizer update, as the trainer makes it and the pipeline's speed probe times it
(`nmt.training.probe`): forward under autocast (with scheduled sampling's first pass where
it is on), the label-smoothed loss (with the teachers' distributions under word-level
distillation), backward over `accum_steps` batches, gradient clipping,
the non-finite-loss guard, the optimizer and learning-rate steps."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from nmt.config import TrainConfig
from nmt.model import Transformer
from nmt.training import distributed
from nmt.training.finetune import apply_freezing
from nmt.training.loss import label_smoothed_loss
from nmt.training.optim import lr_schedule, make_optimizer
from nmt.training.sampling import first_pass, mix_inputs, mixing_probability
from nmt.training.word_kd import Teachers, distillation_loss
from nmt.vocab import PAD

log = logging.getLogger(__name__)

# Updates in a row whose loss is NaN or infinite (each one skipped) that stop the run.
MAX_NONFINITE_UPDATES = 3

Batch = tuple[Tensor, Tensor, Tensor]  # source, decoder input, decoder target: (B, T) each


class TrainingDiverged(ValueError):
    """The loss was not finite for `MAX_NONFINITE_UPDATES` updates in a row: the run stops
    there, its checkpoints as they were (a ValueError: the CLI says so in one line)."""


def optimization(
    model: Transformer, c: TrainConfig, amp_dtype: torch.dtype | None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, torch.amp.GradScaler]:
    """The optimizer, learning-rate schedule and fp16 loss scaler of a run (fresh: a
    resumed run loads their state from `last.pt`)."""
    optimizer = make_optimizer(model, c)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_schedule(c.lr_schedule, c.warmup_steps, c.max_steps)
    )
    return optimizer, scheduler, torch.amp.GradScaler(enabled=amp_dtype == torch.float16)


@dataclass
class Step:
    """One optimizer update of `model` over `config.accum_steps` batches. `forward` is the
    model as the loss calls it (compiled, or under DDP in a process group, whose `ddp`
    averages the gradients over the ranks); `run_dir` names the run in `TrainingDiverged`."""

    model: Transformer
    forward: Callable[[Tensor, Tensor], Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    config: TrainConfig
    device: torch.device
    amp_dtype: torch.dtype | None = None
    ddp: DistributedDataParallel | None = None
    run_dir: Path | str = ""
    teachers: Teachers | None = None  # word-level distillation (train.kd_teachers)
    nonfinite: int = field(default=0, init=False)  # updates in a row skipped as non-finite
    # Since `take_padding`: real and padded (slots) source and target tokens of this rank.
    padding: list[int] = field(default_factory=lambda: [0, 0, 0, 0], init=False)

    def __call__(self, next_batch: Callable[[], Batch], done: int) -> tuple[Tensor, Tensor, Tensor]:
        """Update `done` + 1 over the next `accum_steps` batches of `next_batch`; returns
        this rank's summed loss, nll and target tokens (zeros for a skipped update)."""
        c = self.config
        if c.freeze_embeddings or c.freeze_encoder:
            apply_freezing(self.model, c, done)
        sampling = mixing_probability(c.scheduled_sampling, done + 1)
        total_loss = total_nll = total_tokens = 0
        for i in range(c.accum_steps):
            batch = next_batch()
            loss, nll, ntok = self._backward(batch, sampling, last=i == c.accum_steps - 1)
            total_loss, total_nll = total_loss + loss.detach(), total_nll + nll.detach()
            total_tokens = total_tokens + ntok
        norm = None
        if c.clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.clip_norm)
        finite = self._finite(total_loss, total_tokens, norm, done + 1)
        if finite or self.scaler.is_enabled():  # fp16's scaler skips NaN gradients itself
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if not finite:  # a skipped update counts in no log line
            return tuple(torch.zeros_like(t) for t in (total_loss, total_nll, total_tokens))
        return total_loss, total_nll, total_tokens

    def _backward(self, batch: Batch, sampling: float, last: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Forward and backward of one batch; its summed loss, nll and target tokens."""
        c = self.config
        self._count_padding(batch)
        src, tgt_in, tgt_out = (t.to(self.device, non_blocking=True) for t in batch)
        with self._gradient_sync(last):
            with self._autocast():
                if sampling > 0:  # scheduled sampling: the decoder reads its own predictions
                    # (a pass without gradients: DDP leaves it alone, on every rank)
                    own = first_pass(self.forward, self.model, src, tgt_in)
                    tgt_in = mix_inputs(tgt_in, own, sampling, c.scheduled_sampling.predictions)
                logits = self.forward(src, tgt_in)
                probs = self.teachers.probabilities(src, tgt_in) if self.teachers else None
            if probs is None:
                loss, nll, ntok = label_smoothed_loss(logits, tgt_out, c.label_smoothing)
            else:
                loss, nll, ntok = distillation_loss(
                    logits, tgt_out, probs, c.label_smoothing, c.kd_weight
                )
            # Normalise by this batch's tokens; each of the accum batches weighs the same
            # (and DDP's mean over the ranks makes each of the world x accum batches so).
            self.scaler.scale(loss / ntok.clamp(min=1) / c.accum_steps).backward()
        return loss, nll, ntok

    def _count_padding(self, batch: Batch) -> None:
        """Count the batch's real and padded tokens (on the host, where batches are made:
        no device synchronisation)."""
        src, _, tgt_out = batch
        if src.device.type != "cpu":
            return
        counts = (
            int((src != PAD).sum()),
            src.numel(),
            int((tgt_out != PAD).sum()),
            tgt_out.numel(),
        )
        self.padding = [a + b for a, b in zip(self.padding, counts, strict=True)]

    def take_padding(self) -> dict[str, float]:
        """The share of padding in this rank's source and target batches since the last
        call (the waste of batching by length: `nmt.data.batching.make_batches`)."""
        src_real, src_slots, tgt_real, tgt_slots = self.padding
        self.padding = [0, 0, 0, 0]
        if not src_slots:
            return {}
        return {
            "src_padding": round(1 - src_real / src_slots, 4),
            "tgt_padding": round(1 - tgt_real / max(tgt_slots, 1), 4),
        }

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _gradient_sync(self, last: bool):
        """DDP averages the gradients over the ranks once an update, in its last backward."""
        if self.ddp is None or last:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def _finite(self, loss: Tensor, tokens: Tensor, norm: Tensor | None, step: int) -> bool:
        """Whether update `step`'s loss, and its gradient norm where clipping computed one
        (fp16 aside: its loss scaler skips non-finite gradients), are finite on every rank
        (one host synchronisation). An update that is not is skipped, with a warning;
        `MAX_NONFINITE_UPDATES` in a row raise `TrainingDiverged`."""
        finite = torch.isfinite(loss)
        if norm is not None and not self.scaler.is_enabled():
            finite = finite & torch.isfinite(norm)
        if not distributed.max_over_ranks(int(not bool(finite))):
            self.nonfinite = 0
            return True
        self.nonfinite += 1
        what = f"loss {float(loss) / max(int(tokens), 1):.4g}"
        if norm is not None:
            what += f", gradient norm {float(norm):.4g}"
        if self.nonfinite < MAX_NONFINITE_UPDATES:
            log.warning(
                "step %d: %s: update skipped (%d in a row of %d that stop the run)",
                step,
                what,
                self.nonfinite,
                MAX_NONFINITE_UPDATES,
            )
            return False
        dtype = str(self.amp_dtype).removeprefix("torch.")
        fp32 = f", train.precision=fp32 (now {dtype})" if self.amp_dtype is not None else ""
        raise TrainingDiverged(
            f"{self.run_dir}: training diverged at step {step}: {what}, not finite for "
            f"{self.nonfinite} updates in a row (skipped; no checkpoint written from them): "
            f"try a lower train.lr (now {self.config.lr:g}){fp32}, or check the training data"
        )
