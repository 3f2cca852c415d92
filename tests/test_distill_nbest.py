"""N-best distillation: the teacher's N best translations of each line, one beam search,
and the pairs chosen from them (every different one, or the one closest to the reference)."""

from __future__ import annotations

import json

import pytest
from sacrebleu.metrics import CHRF

from nmt.cli.distill import distill_main
from nmt.config import ConfigError, replace
from nmt.decoding import Decoding
from nmt.distill import DistillConfig, DistillError, distill, load_distill_config, select_hypotheses
from nmt.distill import workers as distill_workers
from nmt.translate import load

from .test_distill import CONFIG, read, teacher, toy_data  # noqa: F401 (the fixture)

NBEST = replace(CONFIG, decoding=Decoding(beam_size=3, max_batch_tokens=64), nbest=3)


def chrf(hyp: str, ref: str) -> float:
    return CHRF().sentence_score(hyp, [ref]).score


def test_raw_holds_the_n_best_and_closest_picks_nearest_the_reference(teacher, tmp_path):  # noqa: F811
    out = tmp_path / "d"
    result = distill(teacher / "run", toy_data(teacher), out, replace(NBEST, select="closest"))
    sources, refs = read(teacher / "toy" / "train.en"), read(teacher / "toy" / "train.de")
    nbest = load(teacher / "run").translate_nbest(sources, 3, beam_size=3, max_batch_tokens=64)
    texts = [[h.text for h in hyps] + [""] * (3 - len(hyps)) for hyps in nbest]
    raw = read(out / "raw.de")
    assert raw == [t for line in texts for t in line]  # 3 lines per source, best first
    assert raw[::3] == load(teacher / "run").translate(sources, beam_size=3, max_batch_tokens=64)

    kept_src, kept_tgt = read(out / "train.en"), read(out / "train.de")
    assert len(kept_src) == len(kept_tgt) == result.stats["kept"] <= len(sources)
    line = 0
    for src, tgt in zip(kept_src, kept_tgt, strict=True):
        line = sources.index(src, line)  # the pairs keep the corpus order
        options = [t for t in texts[line] if t]
        assert tgt in options
        assert chrf(tgt, refs[line]) == max(chrf(t, refs[line]) for t in options)
        line += 1
    assert read(out / "mix.de") == refs + kept_tgt  # the original pairs, then the chosen ones

    stats = json.loads((out / "stats.json").read_text())
    assert stats["lines"] == len(sources) and stats["settings"]["nbest"] == 3
    nb = stats["nbest"]
    assert (
        nb["hypotheses"]
        == 3 * len(sources)
        == nb["passed_filters"] + sum(stats["filtered"].values())
    )
    assert nb["pairs"] == stats["kept"] and nb["select"] == "closest"
    assert "x 3 best" in result.summary()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["nbest"] == {"n": 3, "select": "closest"}


def test_one_translation_serves_both_selections(teacher, tmp_path, monkeypatch):  # noqa: F811
    data, out = toy_data(teacher), tmp_path / "d"
    distill(teacher / "run", data, out, replace(NBEST, select="closest"))
    closest = read(out / "train.de")

    def never(translator, lines, options):
        raise AssertionError("translated again")

    monkeypatch.setattr(distill_workers, "_translate_chunk", never)
    result = distill(teacher / "run", data, out, replace(NBEST, select="all"))
    sources, raw = read(teacher / "toy" / "train.en"), read(out / "raw.de")
    pairs = list(zip(read(out / "train.en"), read(out / "train.de"), strict=True))
    expected = []
    for i, src in enumerate(sources):
        different = dict.fromkeys(t for t in raw[3 * i : 3 * i + 3] if t)
        expected += [(src, t) for t in different]
    assert pairs == expected and len(pairs) == result.stats["kept"] > len(closest)
    with pytest.raises(DistillError, match="nbest"):  # the n is the job's: another one is not
        distill(teacher / "run", data, out, replace(NBEST, nbest=2))


def test_select_hypotheses():
    hyps = ["a b", "a b c", "", "x", "x", "y"]  # two lines, 3 best each
    refs = ["a b c", "y"]
    kept = [0, 1, 3, 4, 5]  # the blank one filtered
    assert select_hypotheses(kept, hyps, refs, 3, "closest") == [1, 5]
    assert select_hypotheses(kept, hyps, refs, 3, "all") == [0, 1, 3, 5]  # "x" once
    assert select_hypotheses([3, 4], hyps, refs, 3, "closest") == [3]  # equals: the better-ranked
    assert select_hypotheses([], hyps, refs, 3, "closest") == []


def test_nbest_settings_are_checked(teacher, tmp_path, capsys):  # noqa: F811
    with pytest.raises(ConfigError, match="nbest: must be at most the beam size 4"):
        load_distill_config(None, ["nbest=5"], {"decoding": {"beam_size": 4}})
    with pytest.raises(ConfigError, match="select: one of all, closest"):
        load_distill_config(None, ["select=best"])
    with pytest.raises(ConfigError, match="nbest: must be >= 1"):
        DistillConfig(nbest=0)
    argv = ["-t", str(teacher / "run"), "--data", str(teacher / "toy"), "--test", "test"]
    code = distill_main([*argv, "-o", str(tmp_path / "d"), "--beam", "2", "--nbest", "3"])
    assert code == 2 and not (tmp_path / "d").exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nbest" in err and "beam size 2" in err
