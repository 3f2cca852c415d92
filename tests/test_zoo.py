"""The release stage replaces an earlier release, never a user's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from nmt import zoo
from nmt.config import DataConfig
from nmt.export import export
from nmt.export.folder import ExportError

from .conftest import TOY_PAIRS
from .toys import random_state


def run_folder(run: Path, state: dict, data: dict | None = None) -> Path:
    """A run folder as the zoo reads it: config.yaml (the model's, `data` if given) and a
    summary.json."""
    run.mkdir()
    config = {"model": dict(state["model_config"])} | ({"data": data} if data else {})
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"parameters": 1000, "steps": 5, "wall_time_s": 60, "mean_tgt_tokens_per_s": 9}
    summary |= {"stop_reason": "max_steps", "precision": "fp32", "threads": 1}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def toy_test_set(prefix: Path, src_lang: str, tgt_lang: str) -> tuple[Path, Path]:
    """The toy pairs as PREFIX.SRC_LANG and PREFIX.TGT_LANG."""
    src, ref = Path(f"{prefix}.{src_lang}"), Path(f"{prefix}.{tgt_lang}")
    src.write_text("".join(s + "\n" for s, _ in TOY_PAIRS))
    ref.write_text("".join(t + "\n" for _, t in TOY_PAIRS))
    return src, ref


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
    from nmt.data.corpus import read_parallel

    state = random_state(toy_tokenizer)
    torch.save(state, tmp_path / "model.pt")
    weights = export(tmp_path / "model.pt", tmp_path / "w", format="safetensors")
    ct2 = export(tmp_path / "model.pt", tmp_path / "ct2")
    run = run_folder(tmp_path / "run", state)
    src, ref = toy_test_set(tmp_path / "test", "en", "de")
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


def test_the_model_card_names_the_runs_languages_dataset_and_licence(tmp_path, toy_tokenizer):
    """A French -> English toy corpus, not a registered dataset: the card (and the zoo's
    file names) take its languages, its files' prefix and no licence of its own; a
    registered dataset brings its name and licence."""
    state = random_state(toy_tokenizer)
    torch.save(state, tmp_path / "model.pt")
    ct2 = export(tmp_path / "model.pt", tmp_path / "ct2")
    toy = tmp_path / "toy"
    toy.mkdir()
    data = {"src_lang": "fr", "tgt_lang": "en", "data_dir": str(toy), "test": "test"}
    run = run_folder(tmp_path / "run", state, data)
    src, ref = toy_test_set(toy / "test", "fr", "en")
    models = [
        zoo.ZooModel("teacher", run, ct2, "original", "teacher"),
        zoo.ZooModel("student", run, ct2, "distilled", "student"),
    ]
    table = zoo.write_zoo(models, src, ref, tmp_path / "zoo")  # data: the first run's
    assert (tmp_path / "zoo" / "translations" / "student.beam1.en").is_file()
    card = zoo.write_release(table, "student", tmp_path / "toy-fr-en").read_text()
    assert card.startswith("# toy-fr-en: French -> English, 2-2 layers")
    assert f"Trained by nmt on {toy / 'train'} (French -> English)" in card
    assert f"- {toy / 'train'}: see the data's own licence." in card
    assert "Multi30k" not in card and "German" not in card
    assert f"echo '{TOY_PAIRS[0][0]}' | nmt-translate" in card  # a line of its test set

    tatoeba = zoo.corpus(DataConfig(dataset="tatoeba", src_lang="de", tgt_lang="en"))
    assert (tatoeba["source"], tatoeba["target"], tatoeba["dataset"]) == (
        "German",
        "English",
        "Tatoeba",
    )
    assert tatoeba["licence"].startswith("CC BY 2.0")
    assert zoo.corpus(DataConfig(src_lang="xx", tgt_lang="en"))["source"] == "xx"
    older = {"src": "data/multi30k/test_2016_flickr.en", "ref": "data/multi30k/test_2016_flickr.de"}
    assert zoo._test_set_corpus(older)["dataset"] == "Multi30k"  # zoo.json without a corpus
