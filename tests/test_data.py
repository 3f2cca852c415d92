import numpy as np
import pytest

from nmt.batching import collate, make_batches
from nmt.data import CorpusError, EncodedCorpus, read_lines, read_parallel
from nmt.vocab import BOS, EOS, PAD


def test_mismatched_line_counts_name_both_files(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n")
    (tmp_path / "a.de").write_text("eins\nzwei\n")
    with pytest.raises(CorpusError, match=r"a\.en has 3 lines but .*a\.de has 2"):
        read_parallel(tmp_path / "a.en", tmp_path / "a.de")


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.en"
    path.write_bytes(b"fine\nalso fine\nbroken \xff here\n")
    with pytest.raises(CorpusError, match=r"bad\.en:3: invalid UTF-8"):
        read_lines(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(CorpusError, match="file not found"):
        read_lines(tmp_path / "nope.en")
    (tmp_path / "e.en").write_text("")
    (tmp_path / "e.de").write_text("")
    with pytest.raises(CorpusError, match="empty corpus"):
        read_parallel(tmp_path / "e.en", tmp_path / "e.de")


def test_crlf_and_control_characters_are_cleaned(tmp_path):
    path = tmp_path / "x.en"
    path.write_bytes(b"a\r\nb\x00c\r\n")
    assert read_lines(path) == ["a", "b c"]


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
