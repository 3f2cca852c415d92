"""The release stage replaces an earlier release, never a user's folder."""

from __future__ import annotations

import pytest
import torch

from nmt import zoo
from nmt.export import export
from nmt.export.folder import ExportError

from .toys import random_state


def test_release_replaces_only_a_release(tmp_path, toy_tokenizer, monkeypatch):
    torch.save(random_state(toy_tokenizer), tmp_path / "model.pt")
    exported = export(tmp_path / "model.pt", tmp_path / "exp")
    monkeypatch.setattr(zoo, "model_card", lambda *args: "card\n")
    table = {"models": [{"name": "student", "export": str(exported)}]}
    release = tmp_path / "release"
    assert zoo.write_release(table, "student", release).read_text() == "card\n"
    (release / "README.md").write_text("old card\n")
    zoo.write_release(table, "student", release)  # an earlier release: replaced
    assert (release / "README.md").read_text() == "card\n"

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    for victim in (mine, exported, tmp_path):
        with pytest.raises((ExportError, FileExistsError)):
            zoo.write_release(table, "student", victim)
    assert (mine / "notes.txt").read_text() == "mine\n"
    assert (exported / "model.bin").is_file()
