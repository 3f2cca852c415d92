"""`nmt-translate` never destroys what it reads."""

from __future__ import annotations

import pytest
import torch

from nmt.cli import translate_main

from .toys import random_state


@pytest.fixture
def checkpoint(tmp_path, toy_tokenizer):
    torch.save(random_state(toy_tokenizer), tmp_path / "model.pt")
    return tmp_path / "model.pt"


def test_output_that_is_the_input_is_refused(checkpoint, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("a dog runs\na cat sleeps\n")
    link = tmp_path / "link.txt"
    link.symlink_to(text)
    for output, what in ((text, "the input"), (link, "symbolic link"), (checkpoint, "the input")):
        assert translate_main(["-m", str(checkpoint), "-i", str(text), "-o", str(output)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and what in err[0] and str(output) in err[0], err
    assert text.read_text() == "a dog runs\na cat sleeps\n"
    assert checkpoint.stat().st_size > 1000
    out = tmp_path / "out.txt"
    assert translate_main(["-m", str(checkpoint), "-i", str(text), "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2


@pytest.mark.parametrize("backend", ["pytorch", "ct2", "onnx"])
def test_every_backend_translates_with_the_protocols_options_and_decodings_defaults(backend):
    """One `translate(lines, decoding)` contract (`nmt.backends.base.Translator`): every
    backend takes a `nmt.decoding.Decoding` (the one definition of the options) or its fields
    as keyword options; a backend may add its own in between (CTranslate2's `use_vmap`)."""
    import importlib
    import inspect

    from nmt.backends.base import SearchTranslator, Translator

    pytest.importorskip({"pytorch": "torch", "ct2": "ctranslate2", "onnx": "onnxruntime"}[backend])
    module = importlib.import_module(f"nmt.backends.{backend}")
    translator = {
        "pytorch": "TorchTranslator",
        "ct2": "CT2Translator",
        "onnx": "OnnxTranslator",
    }[backend]
    cls = getattr(module, translator)
    assert cls.backend  # named for logs, benchmarks and provenance
    contract = list(inspect.signature(Translator.translate).parameters)
    params = inspect.signature(cls.translate).parameters
    assert list(params)[:3] == contract[:3] == ["self", "lines", "decoding"]
    assert params["decoding"].default is None
    assert list(params.values())[-1].kind is inspect.Parameter.VAR_KEYWORD
    assert issubclass(cls, SearchTranslator) == (backend != "ct2")  # one search for the rest
