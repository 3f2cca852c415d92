"""Ensembles: the mean of the members' probabilities at every step; one member twice is that
member; members must share a tokenizer; every command that translates takes several."""

from __future__ import annotations

import math

import pytest
import torch

from nmt.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from nmt.cli import evaluate_main, translate_main
from nmt.ensemble import Ensemble
from nmt.translate import load
from nmt.vocab import BOS

from .toys import plain_inputs, random_state


@pytest.fixture
def members(tmp_path, toy_tokenizer):
    for seed in (0, 1):
        torch.save(random_state(toy_tokenizer, seed=seed), tmp_path / f"m{seed}.pt")
    return tmp_path / "m0.pt", tmp_path / "m1.pt"


def test_a_step_is_the_log_of_the_members_mean_probability(members):
    models = [model_from_checkpoint(load_checkpoint(p)) for p in members]
    ensemble = Ensemble(models).eval()
    src = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])
    tokens = torch.full((2,), BOS)
    with torch.inference_mode():
        state = ensemble.init_state(src)
        got = ensemble.decode_step(tokens, state)
        probs = [m.decode_step(tokens, m.init_state(src)).exp() for m in models]
    expected = ((probs[0] + probs[1]) / 2).log()
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(got.exp().sum(-1), torch.ones(2), atol=1e-5)  # a distribution
    assert not math.isclose(float(got[0, 5]), float(probs[0][0, 5].log()), abs_tol=1e-3)


def test_one_model_twice_translates_as_the_model(members):
    lines = plain_inputs()
    single = load(members[0])
    twice = load([members[0], members[0]])
    for beam in (1, 4):
        assert twice.translate(lines, beam_size=beam) == single.translate(lines, beam_size=beam)


def test_two_members_differ_from_each_alone(members):
    lines = plain_inputs()
    both = load(list(members)).translate(lines, beam_size=1)
    alone = [load(p).translate(lines, beam_size=1) for p in members]
    assert both != alone[0] and both != alone[1]


def test_members_must_share_a_tokenizer(members, tmp_path):
    from nmt.config import TokenizerConfig
    from nmt.tokenizer import train_tokenizer

    from .conftest import TOY_PAIRS

    texts = [t for _, t in TOY_PAIRS] * 4 + [s for s, _ in TOY_PAIRS] * 2 + ["zebra quartz"] * 3
    other = train_tokenizer(
        texts, TokenizerConfig(vocab_size=60, byte_fallback=False), tmp_path / "o.model"
    )
    torch.save(random_state(other), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="share one tokenizer"):
        load([members[0], tmp_path / "other.pt"])


def test_translate_and_evaluate_take_several_models(members, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(f"{line}\n" for line in plain_inputs()[:8]))
    out = tmp_path / "out.txt"
    args = ["-m", str(members[0]), "-m", str(members[1])]
    assert translate_main([*args, "-i", str(src), "-o", str(out), "--beam", "2"]) == 0
    expected = load(list(members)).translate(plain_inputs()[:8], beam_size=2)
    assert out.read_text().splitlines() == expected
    result = tmp_path / "eval"
    code = evaluate_main([*args, "--src", str(src), "--ref", str(src), "-o", str(result)])
    assert code == 0 and " + " in (result / "scores.json").read_text()
