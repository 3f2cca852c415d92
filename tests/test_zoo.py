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


def test_an_ensemble_of_weights_folders_is_a_zoo_row(tmp_path, toy_tokenizer):
    """The teacher row of issue 18: an ensemble of PyTorch weights folders, beside a
    CTranslate2 export; the ensemble of a model with itself translates as the model does."""
    import json

    import yaml

    from nmt.data.corpus import read_parallel

    from .conftest import TOY_PAIRS

    state = random_state(toy_tokenizer)
    torch.save(state, tmp_path / "model.pt")
    weights = export(tmp_path / "model.pt", tmp_path / "w", format="safetensors")
    ct2 = export(tmp_path / "model.pt", tmp_path / "ct2")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"model": dict(state["model_config"])}))
    summary = {"parameters": 1000, "steps": 5, "wall_time_s": 60, "mean_tgt_tokens_per_s": 9}
    summary |= {"stop_reason": "max_steps", "precision": "fp32", "threads": 1}
    (run / "summary.json").write_text(json.dumps(summary))
    src, ref = tmp_path / "test.en", tmp_path / "test.de"
    src.write_text("".join(s + "\n" for s, _ in TOY_PAIRS))
    ref.write_text("".join(t + "\n" for _, t in TOY_PAIRS))
    models = [
        zoo.ZooModel("pair", run, weights, "original", "pair", ensemble=(weights,)),
        zoo.ZooModel("one", run, weights, "original", "one"),
        zoo.ZooModel("one-ct2", run, ct2, "original", "one-ct2"),
    ]
    table = zoo.write_zoo(models, src, ref, tmp_path / "zoo")
    pair, one, one_ct2 = table["models"]
    assert pair["layers"] == "2 x 2-2" and one["layers"] == "2-2"
    assert pair["parameters"] == 2 * one["parameters"] == 2000
    assert pair["export_mb"] == pytest.approx(2 * one["export_mb"], abs=0.02)  # rounding
    assert pair["ensemble"] == [str(weights)] and one["ensemble"] == []
    hyps = {
        name: (tmp_path / "zoo" / "translations" / f"{name}.beam1.de").read_text()
        for name in ("pair", "one", "one-ct2")
    }
    assert hyps["pair"] == hyps["one"]
    assert len(hyps["one-ct2"].splitlines()) == len(read_parallel(src, ref)[0])
    assert "| pair | original | 2 x 2-2 |" in (tmp_path / "zoo" / "zoo.md").read_text()
