"""nmt.data.batching: token-bucketed batches, epochs and collation."""

import numpy as np

from nmt.data.batching import collate, make_batches
from nmt.data.corpus import EncodedCorpus
from nmt.vocab import BOS, EOS, PAD


def test_batches_respect_token_budget_and_cover_every_pair_once():
    rng = np.random.default_rng(0)
    src_len, tgt_len = rng.integers(1, 50, 1000), rng.integers(1, 50, 1000)
    batches = make_batches(src_len, tgt_len, max_tokens=400, seed=1, epoch=0)
    seen = np.sort(np.concatenate(batches))
    assert np.array_equal(seen, np.arange(1000))
    for b in batches:
        assert len(b) * max(src_len[b].max(), tgt_len[b].max()) <= 400


def test_batches_reshuffle_per_epoch_and_repeat_per_seed():
    lens = np.arange(1, 301) % 37 + 1
    a0 = make_batches(lens, lens, 200, seed=1, epoch=0)
    a1 = make_batches(lens, lens, 200, seed=1, epoch=1)
    again = make_batches(lens, lens, 200, seed=1, epoch=0)
    assert all(np.array_equal(x, y) for x, y in zip(a0, again, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a0, a1, strict=False))


def test_collate_shifts_targets():
    corpus = EncodedCorpus(
        [np.array([5, 6, EOS]), np.array([7, EOS])], [np.array([8, 9]), np.array([10])]
    )
    src, tgt_in, tgt_out = collate([corpus.pair(0), corpus.pair(1)])
    assert src.tolist() == [[5, 6, EOS], [7, EOS, PAD]]
    assert tgt_in.tolist() == [[BOS, 8, 9], [BOS, 10, PAD]]
    assert tgt_out.tolist() == [[8, 9, EOS], [10, EOS, PAD]]
