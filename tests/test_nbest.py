"""n-best translation (`translate_nbest`) in every backend: the beam's finished hypotheses,
best first, the first being `translate`'s output."""

import pytest

from nmt.config import ConfigError
from nmt.decoding import Decoding
from nmt.translate import load

from .toys import toy_exports

LINES = ["a dog runs in the park.", "", "two men play football on the street today."]


@pytest.fixture(scope="module")
def exports(toy_tokenizer, tmp_path_factory):
    return toy_exports(tmp_path_factory.mktemp("nbest"), toy_tokenizer)


@pytest.mark.parametrize("backend", ["pytorch", "ctranslate2", "onnx"])
def test_first_of_the_nbest_is_the_translation(exports, backend):
    if backend not in exports:
        pytest.skip(f"{backend} is not installed")
    translator = load(exports[backend], threads=1)
    decoding = Decoding(beam_size=4, max_len_a=0, max_len_b=12)
    nbest = translator.translate_nbest(LINES, 3, decoding)
    assert [hyps[0].text for hyps in nbest] == translator.translate(LINES, decoding)
    assert [h.text for h in nbest[1]] == [""]  # a blank line: one empty hypothesis
    for hyps in (nbest[0], nbest[2]):
        assert len(hyps) == 3
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)


def test_ctranslate2_nbest_is_pytorchs(exports):
    if "ctranslate2" not in exports:
        pytest.skip("ctranslate2 is not installed")
    decoding = Decoding(beam_size=4, max_len_a=0, max_len_b=12)
    torch_nbest = load(exports["pytorch"], threads=1).translate_nbest(LINES, 4, decoding)
    ct2_nbest = load(exports["ctranslate2"], threads=1).translate_nbest(LINES, 4, decoding)
    assert [[h.text for h in hyps] for hyps in ct2_nbest] == [
        [h.text for h in hyps] for hyps in torch_nbest
    ]
    for a, b in zip(ct2_nbest, torch_nbest, strict=True):
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4)


@pytest.mark.parametrize("backend", ["pytorch", "ctranslate2"])
@pytest.mark.parametrize("n", [0, 5, 2.0, True])
def test_nbest_outside_one_to_the_beam_is_refused(exports, backend, n):
    if backend not in exports:
        pytest.skip(f"{backend} is not installed")
    with pytest.raises(ConfigError, match="n_best: must be"):
        load(exports[backend], threads=1).translate_nbest(LINES, n, beam_size=4)
