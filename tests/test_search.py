"""nmt.search: greedy and beam search under CTranslate2's rules, on a tiny random model."""

import pytest
import torch

from nmt.config import ConfigError
from nmt.data.batching import pad_sources
from nmt.decoding import Decoding
from nmt.search import beam_search, greedy_search, nbest_search
from nmt.vocab import BOS, EOS, PAD

from .test_model import random_batch


def test_beam_one_equals_greedy(tiny_model):
    src, _ = random_batch(B=5, seed=3)
    opts = Decoding(beam_size=1, max_len_a=0, max_len_b=12)
    assert beam_search(tiny_model, src, opts) == greedy_search(tiny_model, src, opts)


def test_beam_search_respects_length_limit_and_min_len(tiny_model):
    src, _ = random_batch(B=4, seed=5)
    out = beam_search(tiny_model, src, Decoding(beam_size=4, max_len_a=0, max_len_b=5))
    assert len(out) == 4
    assert all(1 <= len(h) <= 5 for h in out)
    assert all(EOS not in h and BOS not in h for h in out)


def test_beam_search_batched_equals_one_by_one(tiny_model):
    src, _ = random_batch(B=3, seed=7)
    opts = Decoding(beam_size=3, max_len_a=0, max_len_b=8)
    batched = beam_search(tiny_model, src, opts)
    single = [
        beam_search(tiny_model, pad_sources([[t for t in row.tolist() if t != PAD]]), opts)[0]
        for row in src
    ]
    assert batched == single


def test_wide_beam_finds_the_exact_best_one_token_output(tiny_model):
    """With one token then a forced EOS and a beam wider than the vocabulary, beam search is
    exhaustive: it must return argmax_t log p(t) + log p(EOS | t)."""
    src, _ = random_batch(B=2, seed=11)
    beam = beam_search(
        tiny_model, src, Decoding(beam_size=40, length_penalty=0.0, max_len_a=0, max_len_b=1)
    )
    for i in range(2):
        candidates = torch.arange(4, 40)
        tgt = torch.stack([torch.full_like(candidates, BOS), candidates], dim=1)
        with torch.no_grad():
            lp = torch.log_softmax(tiny_model(src[i : i + 1].expand(len(candidates), -1), tgt), -1)
        totals = lp[:, 0].gather(1, candidates[:, None])[:, 0] + lp[:, 1, EOS]
        assert beam[i] == [int(candidates[totals.argmax()])]


def test_nbest_is_the_beam_ranked_and_its_first_is_the_best(tiny_model):
    src, _ = random_batch(B=4, seed=13)
    opts = Decoding(beam_size=4, max_len_a=0, max_len_b=8)
    nbest = nbest_search(tiny_model, src, opts, 3)
    assert [hyps[0][1] for hyps in nbest] == beam_search(tiny_model, src, opts)
    for hyps in nbest:
        assert 1 <= len(hyps) <= 3
        scores = [score for score, _ in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(ids) for _, ids in hyps}) == len(hyps)  # distinct hypotheses
    one = nbest_search(tiny_model, src, Decoding(beam_size=1, max_len_a=0, max_len_b=8), 1)
    greedy = greedy_search(tiny_model, src, Decoding(beam_size=1, max_len_a=0, max_len_b=8))
    assert [hyps[0][1] for hyps in one] == greedy


def test_nbest_beyond_the_beam_is_refused(tiny_model):
    src, _ = random_batch(B=2, seed=1)
    with pytest.raises(ConfigError, match="n_best: must be between 1 and the beam size 2"):
        nbest_search(tiny_model, src, Decoding(beam_size=2), 3)
