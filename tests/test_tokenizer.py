import pytest

from nmt.config import TokenizerConfig
from nmt.tokenizer import Tokenizer, train_tokenizer
from nmt.vocab import BOS, EOS, PAD, UNK

from .conftest import TOY_PAIRS


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    lines = [s for pair in TOY_PAIRS for s in pair] * 20
    path = tmp_path_factory.mktemp("spm") / "spm.model"
    return train_tokenizer(lines, TokenizerConfig(vocab_size=300, byte_fallback=True), path)


def test_special_ids_are_fixed(tokenizer):
    sp = tokenizer.sp
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD, UNK, BOS, EOS)


def test_roundtrip_with_unseen_characters_uses_byte_fallback(tokenizer):
    text = "ein hund 😀 日本 שלום"
    ids = tokenizer.encode([text])[0]
    assert UNK not in ids
    assert tokenizer.decode([ids]) == [text]


def test_model_file_roundtrip_and_hash(tokenizer):
    again = Tokenizer.from_file(tokenizer.source)
    assert again.sha256() == tokenizer.sha256()
    assert again.encode(["ein hund"]) == tokenizer.encode(["ein hund"])


def test_not_a_sentencepiece_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        Tokenizer.from_file(bad)
