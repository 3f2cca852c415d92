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
    for output, what in ((text, "input file"), (link, "input file"), (checkpoint, "model file")):
        assert translate_main(["-m", str(checkpoint), "-i", str(text), "-o", str(output)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is the {what}" in err[0], err
    assert text.read_text() == "a dog runs\na cat sleeps\n"
    assert checkpoint.stat().st_size > 1000
    out = tmp_path / "out.txt"
    assert translate_main(["-m", str(checkpoint), "-i", str(text), "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2
