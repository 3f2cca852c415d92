"""Word-level knowledge distillation (Hinton et al. 2015; Kim & Rush 2016's word-KD): beside
the label-smoothed loss on the corpus's targets, the student learns the teachers' whole
next-token distribution at every target position (teacher forcing on the same batch).

`train.kd_teachers` names the teachers (run folders, checkpoints or weights folders of the
student's tokenizer; several: their probabilities averaged, as an ensemble decodes) and
`train.kd_weight` w the share of the loss they give:

    loss = (1 - w) * label_smoothed_loss + w * sum over target tokens of CE(p_teacher, p_student)

The cross-entropy against the teachers' distribution differs from KL(p_teacher || p_student)
by the teachers' entropy, a constant for the student: the same gradient, (p_student -
p_teacher) per position. On a corpus the teachers translated (`nmt-distill`) this is
sequence- and word-level distillation together, Kim & Rush's best single-model student."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from nmt.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
)
from nmt.config import ConfigError
from nmt.fileio import file_sha256
from nmt.model import Transformer
from nmt.tokenizer import Tokenizer
from nmt.training.loss import label_smoothed_loss
from nmt.vocab import PAD

log = logging.getLogger(__name__)

KEY = "train.kd_teachers"


class Teachers:
    """The frozen teacher models of a run (evaluation mode, no gradients) and what they are
    (`describe`: each checkpoint and its sha256, for the run's summary)."""

    def __init__(self, paths: list[str], tokenizer: Tokenizer, device: torch.device):
        self.models: list[Transformer] = []
        self.files: list[dict[str, str]] = []
        for spec in paths:
            try:
                ckpt = find_checkpoint(Path(spec))
                state = load_checkpoint(ckpt)
            except (FileNotFoundError, CheckpointError) as e:
                raise ConfigError(f"{KEY}: {spec}: {e}") from None
            theirs = Tokenizer(state["tokenizer_model"], f"{ckpt}:tokenizer_model")
            if theirs.sha256() != tokenizer.sha256():
                raise ConfigError(
                    f"{KEY}: {ckpt}'s tokenizer (sha256 {theirs.sha256()[:12]}) is not the "
                    f"student's ({tokenizer.source}, sha256 {tokenizer.sha256()[:12]}): a "
                    "teacher's distribution is over its own vocabulary, so it must be the same"
                )
            model = model_from_checkpoint(state, ckpt).to(device).eval()
            model.requires_grad_(False)
            self.models.append(model)
            self.files.append({"path": str(ckpt), "sha256": file_sha256(ckpt)})
        log.info(
            "word-level distillation from %d teacher(s): %s",
            len(self.models),
            ", ".join(f"{f['path']} (sha256 {f['sha256'][:12]})" for f in self.files),
        )

    @torch.no_grad()
    def probabilities(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """The teachers' next-token probabilities at every target position, averaged over
        the teachers: (B, T, V), float32."""
        total = None
        for model in self.models:
            probs = torch.softmax(model(src, tgt_in).float(), dim=-1)
            total = probs if total is None else total.add_(probs)
        return total.div_(len(self.models))


def distillation_loss(
    logits: Tensor, target: Tensor, teacher_probs: Tensor, smoothing: float, weight: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(1 - `weight`) x the label-smoothed loss + `weight` x the cross-entropy against
    `teacher_probs`, summed over the non-pad target tokens; with the NLL of the targets (for
    logging) and the token count, as `label_smoothed_loss` returns them."""
    smoothed, nll, ntok = label_smoothed_loss(logits, target, smoothing)
    lprobs = torch.log_softmax(logits.float(), dim=-1)
    soft = -(teacher_probs * lprobs).sum(-1)
    soft = soft.masked_fill(target == PAD, 0.0).sum()
    return (1 - weight) * smoothed + weight * soft, nll, ntok
