"""`nmt-evaluate -o` replaces only an earlier evaluation's files, and only with --force."""

from __future__ import annotations

import json

import torch

from nmt.cli import evaluate_main

from .conftest import TOY_PAIRS
from .toys import random_state


def test_evaluate_replaces_only_its_own_files(tmp_path, toy_tokenizer, capsys):
    torch.save(random_state(toy_tokenizer), tmp_path / "model.pt")
    src, ref = tmp_path / "test.en", tmp_path / "test.de"
    src.write_text("".join(f"{s}\n" for s, _ in TOY_PAIRS))
    ref.write_text("".join(f"{t}\n" for _, t in TOY_PAIRS))
    args = ["-m", str(tmp_path / "model.pt"), "--src", str(src), "--ref", str(ref), "--beam", "1"]
    out = tmp_path / "eval"
    assert evaluate_main([*args, "-o", str(out)]) == 0
    capsys.readouterr()
    assert evaluate_main([*args, "-o", str(out)]) == 2  # exists: needs --force
    assert "already exists" in capsys.readouterr().err
    assert evaluate_main([*args, "-o", str(out), "--force"]) == 0
    assert "bleu_signature" in json.loads((out / "scores.json").read_text())
    capsys.readouterr()

    mine = tmp_path / "mine"  # a folder whose hyp.txt no evaluation wrote
    mine.mkdir()
    (mine / "hyp.txt").write_text("my own hypotheses\n")
    assert evaluate_main([*args, "-o", str(mine), "--force"]) == 2
    assert (mine / "hyp.txt").read_text() == "my own hypotheses\n"
    assert not (mine / "scores.json").exists()
