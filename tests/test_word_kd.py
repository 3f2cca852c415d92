"""Word-level distillation: the loss against the teachers' distribution, its gradient, and a
toy student that learns its teacher's distribution from it."""

from __future__ import annotations

import pytest
import torch

from nmt.config import ConfigError, load_run_config
from nmt.training.loss import composed_loss
from nmt.training.run import train
from nmt.training.word_kd import Teachers, distillation_loss
from nmt.vocab import BOS, EOS, PAD

from .test_train import toy_config


def test_loss_is_the_weighted_sum_and_its_gradient_moves_toward_the_teacher():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.float64, requires_grad=True)
    target = torch.randint(4, 11, (3, 5))
    target[0, 3:] = PAD
    target[2, 1:] = PAD
    teacher = torch.softmax(torch.randn(3, 5, 11, dtype=torch.float64), dim=-1)
    keep = target != PAD

    loss, nll, ntok = distillation_loss(logits, target, teacher, 0.1, 0.3)
    smoothed, ref_nll, ref_ntok = composed_loss(logits, target, 0.1)
    soft = -(teacher * torch.log_softmax(logits, -1)).sum(-1)[keep].sum()
    assert torch.allclose(loss, 0.7 * smoothed + 0.3 * soft)
    assert torch.allclose(nll, ref_nll) and int(ntok) == int(ref_ntok) == int(keep.sum())

    # weight 1: the gradient is p_student - p_teacher at each real token, 0 at padding
    loss, _, _ = distillation_loss(logits, target, teacher, 0.1, 1.0)
    (grad,) = torch.autograd.grad(loss, logits)
    expected = (torch.softmax(logits, -1) - teacher) * keep[..., None]
    assert torch.allclose(grad, expected)


def kl_to(teacher: Teachers, student: torch.nn.Module, batch) -> float:
    """Mean KL(teacher || student) over the real target tokens of `batch`."""
    src, tgt_in, tgt_out = batch
    with torch.no_grad():
        p = teacher.probabilities(src, tgt_in)
        lq = torch.log_softmax(student(src, tgt_in).float(), -1)
    kl = (p * (p.clamp_min(1e-12).log() - lq)).sum(-1)
    return float(kl[tgt_out != PAD].mean())


def test_a_student_learns_its_teachers_distribution(toy_corpus, tmp_path):
    from nmt.checkpoint import find_checkpoint, load_checkpoint, model_from_checkpoint
    from nmt.tokenizer import Tokenizer

    train(toy_config(tmp_path / "teacher", toy_corpus, "train.max_steps=60"))
    spm = f"tokenizer.model={tmp_path / 'teacher' / 'spm.model'}"
    common = (spm, "train.max_steps=40", "train.seed=3", "train.label_smoothing=0.1")
    kd = (f"train.kd_teachers=[{tmp_path / 'teacher'}]", "train.kd_weight=1.0")
    summary = train(toy_config(tmp_path / "kd", toy_corpus, *common, *kd))
    train(toy_config(tmp_path / "plain", toy_corpus, *common))

    tokenizer = Tokenizer.from_file(tmp_path / "teacher" / "spm.model")
    teacher = Teachers([str(tmp_path / "teacher")], tokenizer, torch.device("cpu"))
    assert summary["kd_teachers"]["weight"] == 1.0
    assert summary["kd_teachers"]["files"] == teacher.files
    assert teacher.files[0]["sha256"] and len(teacher.models) == 1

    lines = (toy_corpus / "train.en").read_text().splitlines()[:8]
    targets = (toy_corpus / "train.de").read_text().splitlines()[:8]
    src = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor([*ids, EOS]) for ids in tokenizer.encode(lines)], True, PAD
    )
    tgt = [torch.tensor([BOS, *ids, EOS]) for ids in tokenizer.encode(targets)]
    tgt = torch.nn.utils.rnn.pad_sequence(tgt, True, PAD)
    batch = (src, tgt[:, :-1], tgt[:, 1:])

    def student(name):
        ckpt = find_checkpoint(tmp_path / name)
        return model_from_checkpoint(load_checkpoint(ckpt), ckpt).eval()

    # the student taught by the distribution is nearer it than the one taught by the targets
    kd_kl, plain_kl = kl_to(teacher, student("kd"), batch), kl_to(teacher, student("plain"), batch)
    assert kd_kl < plain_kl


def test_teachers_must_share_the_students_tokenizer(toy_corpus, tmp_path):
    train(toy_config(tmp_path / "other", toy_corpus, "train.max_steps=1"))
    config = toy_config(
        tmp_path / "student",
        toy_corpus,
        "tokenizer.vocab_size=50",
        "train.max_steps=1",
        f"train.kd_teachers=[{tmp_path / 'other'}]",
    )
    with pytest.raises(ConfigError, match=r"train\.kd_teachers: .*tokenizer .* is not the student"):
        train(config)
    missing = toy_config(tmp_path / "s2", toy_corpus, f"train.kd_teachers=[{tmp_path / 'nowhere'}]")
    with pytest.raises(ConfigError, match=r"train\.kd_teachers: .*nowhere"):
        train(missing)


def test_kd_weight_is_checked():
    with pytest.raises(ConfigError, match=r"train\.kd_weight: must be in \(0, 1\]"):
        load_run_config(None, ["train.kd_weight=0"])
    with pytest.raises(ConfigError, match=r"train\.kd_weight"):
        load_run_config(None, ["train.kd_weight=1.5"])
