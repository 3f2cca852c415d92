"""Scheduled sampling: the schedules, the mixing of decoder inputs, and training with it."""

import json
import math

import pytest
import torch

from nmt.checkpoint import load_checkpoint
from nmt.config import ConfigError, ScheduledSamplingConfig
from nmt.training.run import train
from nmt.training.sampling import mix_inputs, mixing_probability
from nmt.training.trainer import Trainer
from nmt.vocab import BOS, PAD

from .test_train import toy_config, train_losses


def test_schedules():
    p = mixing_probability
    linear = ScheduledSamplingConfig(schedule="linear", k=100, start_step=50, max_prob=0.5)
    assert [p(linear, s) for s in (1, 50, 100, 150, 400)] == [0.0, 0.0, 0.25, 0.5, 0.5]
    constant = ScheduledSamplingConfig(schedule="constant", max_prob=1.0)
    assert p(constant, 1) == p(constant, 10_000) == 1.0
    exponential = ScheduledSamplingConfig(schedule="exponential", k=0.99, max_prob=1.0)
    assert p(exponential, 100) == pytest.approx(1 - 0.99**100)
    sigmoid = ScheduledSamplingConfig(schedule="inverse_sigmoid", k=10, max_prob=0.4)
    assert p(sigmoid, 30) == pytest.approx(0.4 * (1 - 10 / (10 + math.exp(3))))
    assert p(sigmoid, 10**9) == pytest.approx(0.4)  # no overflow
    assert p(ScheduledSamplingConfig(), 500) == 0.0  # off by default


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"schedule": "cosine"}, "schedule"),
        ({"max_prob": 1.5}, "max_prob"),
        ({"schedule": "exponential", "k": 2.0}, "k"),
        ({"schedule": "inverse_sigmoid", "k": 0.5}, "k"),
        ({"predictions": "beam"}, "predictions"),
    ],
)
def test_bad_settings_name_the_key(changes, key):
    with pytest.raises(ConfigError, match=f"^train.scheduled_sampling.{key}: "):
        ScheduledSamplingConfig(**changes)


def toy_batch():
    tgt_in = torch.tensor([[BOS, 7, 8, 9, 10], [BOS, 11, 12, PAD, PAD]])
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 20)
    own = torch.cat([tgt_in[:, :1], logits.argmax(-1)[:, :-1]], dim=1)
    return tgt_in, logits, own


def test_probability_zero_keeps_the_gold_inputs():
    tgt_in, logits, _ = toy_batch()
    assert torch.equal(mix_inputs(tgt_in, logits, 0.0), tgt_in)


def test_probability_one_feeds_the_first_pass_argmax():
    tgt_in, logits, own = toy_batch()
    mixed = mix_inputs(tgt_in, logits, 1.0)
    real = tgt_in != PAD
    assert torch.equal(mixed[real], own[real])  # BOS, then the prediction of each position
    assert torch.equal(mixed[~real], tgt_in[~real])  # padding stays padding
    assert (mixed[:, 0] == BOS).all()


def test_samples_follow_the_distribution():
    tgt_in, _, _ = toy_batch()
    certain = torch.full((2, 5, 20), -1e4)
    certain[..., 3] = 0.0  # all mass on token 3
    mixed = mix_inputs(tgt_in, certain, 1.0, predictions="sample")
    after_bos = tgt_in != PAD
    after_bos[:, 0] = False
    assert (mixed[after_bos] == 3).all() and (mixed[:, 0] == BOS).all()


def test_a_mixing_probability_between_zero_and_one_mixes():
    tgt_in = torch.full((64, 30), 5)
    tgt_in[:, 0] = BOS
    logits = torch.zeros(64, 30, 20)
    logits[..., 6] = 1.0
    share = (mix_inputs(tgt_in, logits, 0.3)[:, 1:] == 6).float().mean().item()
    assert 0.25 < share < 0.35


def test_probability_zero_trains_exactly_as_teacher_forcing(tmp_path, toy_corpus):
    base = ("train.max_steps=12", "model.dropout=0.1")
    train(toy_config(tmp_path / "plain", toy_corpus, *base))
    # Sampling configured, but its probability is 0 for every update of the run.
    train(
        toy_config(
            tmp_path / "later",
            toy_corpus,
            *base,
            "train.scheduled_sampling.max_prob=0.5",
            "train.scheduled_sampling.start_step=100",
        )
    )
    assert train_losses(tmp_path / "later") == train_losses(tmp_path / "plain")
    a = load_checkpoint(tmp_path / "plain" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "later" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_probability_one_trains_on_the_models_own_argmax(tmp_path, toy_corpus):
    config = toy_config(
        tmp_path / "run",
        toy_corpus,
        "train.max_steps=3",
        "model.dropout=0.1",
        "train.scheduled_sampling.schedule=constant",
        "train.scheduled_sampling.max_prob=1.0",
    )
    trainer = Trainer(config)
    calls = []

    def recording(src, tgt_in):
        out = trainer.model(src, tgt_in)
        calls.append((trainer.model.training, tgt_in.clone(), out.detach().clone()))
        return out

    trainer.stepper.forward = recording
    trainer.train_step()
    (first_training, gold, first), (second_training, fed, _) = calls
    assert not first_training and second_training  # first pass without dropout
    own = torch.cat([gold[:, :1], first.argmax(-1)[:, :-1]], dim=1)
    real = gold != PAD
    assert torch.equal(fed[real], own[real]) and not torch.equal(fed, gold)


def test_scheduled_sampling_resumes_exactly(tmp_path, toy_corpus):
    ss = ("train.scheduled_sampling.max_prob=0.5", "train.scheduled_sampling.k=10")
    train(toy_config(tmp_path / "full", toy_corpus, "train.max_steps=20", *ss))
    train(toy_config(tmp_path / "part", toy_corpus, "train.max_steps=10", *ss))
    train(toy_config(tmp_path / "part", toy_corpus, "train.max_steps=20", *ss), resume=True)
    assert train_losses(tmp_path / "part") == train_losses(tmp_path / "full")
    records = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert [r["sampling_prob"] for r in records if r["type"] == "train"] == [0.25, 0.5, 0.5, 0.5]
