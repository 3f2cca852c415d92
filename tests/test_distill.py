"""Distillation: a toy teacher translates a toy corpus into an aligned, filtered dataset
folder; an interrupted run resumes to the same bytes, each chunk translated once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nmt.config import ConfigError, DataConfig, load_run_config, replace
from nmt.data.datasets import split_paths
from nmt.decoding import Decoding
from nmt.distill import (
    FILTERS,
    DistillConfig,
    DistillError,
    FilterConfig,
    Parts,
    distill,
    filter_pairs,
    is_bad_ratio,
    is_copied,
    is_degenerate,
    load_distill_config,
    source_data,
)
from nmt.distill import workers as distill_workers
from nmt.fileio import file_sha256
from nmt.outputs import OutputError
from nmt.training.run import train
from nmt.translate import load

from .conftest import TOY_PAIRS
from .test_train import toy_config

SOURCES = [s for s, _ in TOY_PAIRS]
TARGETS = [t for _, t in TOY_PAIRS]
CONFIG = DistillConfig(Decoding(beam_size=2, max_batch_tokens=64), chunk_lines=10, mix=True)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A toy run folder that learnt TOY_PAIRS, beside its corpus (train x8, val, test)."""
    root = tmp_path_factory.mktemp("distill")
    corpus = root / "toy"
    corpus.mkdir()
    for split, reps in (("train", 8), ("val", 1), ("test", 1)):
        (corpus / f"{split}.en").write_text("".join(f"{s}\n" for s in SOURCES) * reps)
        (corpus / f"{split}.de").write_text("".join(f"{t}\n" for t in TARGETS) * reps)
    train(toy_config(root / "run", corpus, "train.max_steps=150", "train.save_every=1000"))
    return root


def toy_data(teacher: Path) -> DataConfig:
    return source_data(str(teacher / "toy"), test="test")


def read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_distilled_folder_is_aligned_and_describes_itself(teacher, tmp_path):
    out = tmp_path / "distilled"
    result = distill(teacher / "run", toy_data(teacher), out, CONFIG)
    sources = read(teacher / "toy" / "train.en")
    expected = load(teacher / "run").translate(sources, beam_size=2, max_batch_tokens=64)
    assert read(out / "raw.de") == expected  # every output, in corpus order
    kept_src, kept_tgt = read(out / "train.en"), read(out / "train.de")
    assert len(kept_src) == len(kept_tgt) == result.stats["kept"] > 0
    kept, _, _ = filter_pairs(sources, expected, CONFIG.filters)
    assert kept_src == [sources[i] for i in kept] and kept_tgt == [expected[i] for i in kept]
    # mix: the original pairs, then the distilled ones; val and test copied
    assert read(out / "mix.en") == sources + kept_src
    assert read(out / "mix.de") == read(teacher / "toy" / "train.de") + kept_tgt
    for name in ("val.en", "val.de", "test.en", "test.de"):
        assert (out / name).read_bytes() == (teacher / "toy" / name).read_bytes()
    assert not (out / "parts").exists()
    # a dataset folder: --data-dir points a registered dataset at it; mix by file prefix
    run = load_run_config(None, ["data.dataset=multi30k", f"data.data_dir={out}"])
    assert split_paths(run.data, "train") == (out / "train.en", out / "train.de")
    run = load_run_config(None, ["data.dataset=", f"data.data_dir={out}", "data.train=mix"])
    assert split_paths(run.data, "mix") == (out / "mix.en", out / "mix.de")

    stats = json.loads((out / "stats.json").read_text())
    assert stats["lines"] == len(sources) == stats["kept"] + sum(stats["filtered"].values())
    assert set(stats["filtered"]) == set(FILTERS)
    assert stats["target_words"] == sum(len(h.split()) for h in expected)
    assert stats["target_pieces"] > 0 and stats["translate_seconds"] > 0
    assert stats["target_pieces_per_s"] > 0 and stats["chunks"] == 7
    assert stats["settings"]["beam_size"] == 2 and stats["hardware"]["cpus"] >= 1
    top = stats["top_output"]  # the toy corpus repeats 8 pairs: not judged (8 sources)
    assert top["line"] in kept_tgt and top["lines"] == kept_tgt.count(top["line"])
    assert top["kept_sources"] <= 8 and "most frequent output" in result.summary()

    prov = json.loads((out / "provenance.json").read_text())
    assert prov["teacher"]["backend"] == "pytorch"
    assert prov["teacher"]["checkpoint"]["file"].endswith(".pt")
    assert prov["teacher"]["sha256"] == file_sha256(prov["teacher"]["checkpoint"]["file"])
    assert prov["decoding"]["beam_size"] == 2
    src_file = str(teacher / "toy" / "train.en")
    assert prov["source"]["files"][src_file] == file_sha256(src_file)
    assert prov["outputs"]["train.de"] == file_sha256(out / "train.de")
    assert prov["versions"]["torch"] and prov["created"]


def test_resume_after_interruption_translates_each_chunk_once(teacher, tmp_path, monkeypatch):
    data = toy_data(teacher)
    distill(teacher / "run", data, tmp_path / "whole", CONFIG)

    written: list[int] = []
    real_write, real_translate = Parts.write, distill_workers._translate_chunk

    def spy_write(self, index, result):
        written.append(index)
        real_write(self, index, result)

    calls = 0

    def failing_translate(translator, lines, options):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # killed during the third chunk
        return real_translate(translator, lines, options)

    monkeypatch.setattr(Parts, "write", spy_write)
    monkeypatch.setattr(distill_workers, "_translate_chunk", failing_translate)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        distill(teacher / "run", data, out, CONFIG)
    assert written == [0, 1] and not (out / "raw.de").exists() and not (out / "train.de").exists()
    assert sorted(p.name for p in (out / "parts").glob("0*.json")) == ["000000.json", "000001.json"]

    monkeypatch.setattr(distill_workers, "_translate_chunk", real_translate)
    result = distill(teacher / "run", data, out, CONFIG)
    assert written == list(range(7))  # every chunk written once, across both runs
    assert result.stats["chunks_resumed"] == 2
    for name in ("raw.de", "train.en", "train.de", "mix.en", "mix.de"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()

    written.clear()  # a complete folder: filtered again, nothing translated
    distill(teacher / "run", data, out, CONFIG)
    assert written == []


def test_another_job_needs_force(teacher, tmp_path, monkeypatch):
    data, out = toy_data(teacher), tmp_path / "d"

    def interrupt(translator, lines, options):
        raise KeyboardInterrupt

    real = distill_workers._translate_chunk
    monkeypatch.setattr(distill_workers, "_translate_chunk", interrupt)
    with pytest.raises(KeyboardInterrupt):
        distill(teacher / "run", data, out, CONFIG)
    monkeypatch.setattr(distill_workers, "_translate_chunk", real)
    other = DistillConfig(Decoding(beam_size=1, max_batch_tokens=64), chunk_lines=10)
    with pytest.raises(DistillError, match="beam_size"):
        distill(teacher / "run", data, out, other)
    assert distill(teacher / "run", data, out, other, force=True).stats["lines"] == 64
    with pytest.raises(DistillError, match="beam_size"):  # a finished job too
        distill(teacher / "run", data, out, CONFIG)

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine\n")
    with pytest.raises(OutputError, match="not made by nmt-distill"):
        distill(teacher / "run", data, tmp_path / "busy", CONFIG)
    with pytest.raises(OutputError, match="holds or lies inside the input"):
        distill(teacher / "run", data, teacher / "toy", CONFIG)


def test_worker_processes_give_the_same_corpus(teacher, tmp_path):
    data = toy_data(teacher)
    distill(teacher / "run", data, tmp_path / "one", CONFIG)
    workers = replace(CONFIG, workers=2)
    distill(teacher / "run", data, tmp_path / "two", workers)
    for name in ("raw.de", "train.en", "train.de"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_ctranslate2_teacher(teacher, tmp_path):
    pytest.importorskip("ctranslate2")
    from nmt.export import export

    export(teacher / "run", tmp_path / "ct2", quantization="float32")
    out = tmp_path / "d"
    distill(tmp_path / "ct2", toy_data(teacher), out, CONFIG)
    sources = read(teacher / "toy" / "train.en")
    expected = load(tmp_path / "ct2").translate(sources, beam_size=2, max_batch_tokens=64)
    assert read(out / "raw.de") == expected
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["teacher"]["backend"] == "ctranslate2"
    assert prov["teacher"]["export"]["quantization"] == "float32"


# --- filters -------------------------------------------------------------------------------

FILTER_CASES = [  # (source, teacher output, the filter that rejects it or None)
    ("a dog runs", "ein hund rennt", None),
    ("a woman reads a book in the park", "eine frau liest ein buch im park", None),
    ("a dog runs", "", "empty"),
    ("a dog runs", "   ", "empty"),
    ("two dogs", "ein hund ein hund ein hund ein hund", "degenerate"),
    ("a man", "ein mann mann mann mann", "degenerate"),
    ("a dog", "phonphonphonphonphon", "degenerate"),  # a piece in a loop: one word
    ("people in a street", "x y z x z y y x z x y z", "degenerate"),  # 3 of 12 distinct
    ("a dog runs", "a dog runs", "copied"),
    ("John Smith plays in London.", "john smith plays in london", "copied"),
    ("a girl sings a song on the stage", "mädchen", "bad_ratio"),
    ("hi", "hallo du da wie geht es dir heute so", "bad_ratio"),
]


def test_each_filter_removes_what_it_should_with_counts():
    sources, hyps, reasons = zip(*FILTER_CASES, strict=True)
    kept, counts, examples = filter_pairs(list(sources), list(hyps), FilterConfig())
    assert kept == [i for i, r in enumerate(reasons) if r is None]
    assert counts == {name: reasons.count(name) for name in FILTERS}
    assert examples["copied"][0] == {"line": 9, "src": "a dog runs", "hyp": "a dog runs"}


def test_filter_thresholds():
    c = FilterConfig()
    assert not is_degenerate("", "sehr sehr sehr gut", c)  # 3 in a row: allowed
    assert is_degenerate("", "sehr sehr sehr gut", FilterConfig(max_repeats=3))
    long_phrase = " ".join(["ein großer brauner hund mit ball"] * 4)  # 32 characters
    assert is_degenerate("", long_phrase, FilterConfig(min_unique_ratio=0.0))
    only_repeats = FilterConfig(repeat_unit_chars=30, min_unique_ratio=0.0)
    assert not is_degenerate("", long_phrase, only_repeats)
    assert not is_degenerate("", "x y z x z y y x z", c)  # 9 tokens: below unique_min_tokens
    assert not is_copied("Paris in May", "Paris im Mai", c)  # short sides are not checked
    assert is_copied(
        "Paris in May", "Paris im Mai", FilterConfig(copy_min_tokens=3, max_overlap=0.3)
    )
    assert not is_bad_ratio("a b c d e", "v", c)  # 5 tokens: below ratio_min_tokens
    assert is_bad_ratio("a b c d e f", "v w", c) and not is_bad_ratio("a b c d e", "v w", c)


def test_distill_counts_what_a_bad_teacher_produces(teacher, tmp_path, monkeypatch):
    """A fake teacher that answers each source with a scripted output: the counts in
    stats.json match, and the rejected pairs are gone from both sides."""
    sources, hyps, reasons = zip(*FILTER_CASES, strict=True)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.en").write_text("".join(f"{s}\n" for s in sources))
    (corpus / "train.de").write_text("".join(f"{t}\n" for t in sources))
    script = list(hyps)

    class Scripted:
        def translate(self, lines, **options):
            return [script.pop(0) for _ in lines]

    monkeypatch.setattr(distill_workers, "_load_teacher", lambda teacher, config: Scripted())
    result = distill(teacher / "run", source_data(str(corpus)), tmp_path / "d", DistillConfig())
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert stats["filtered"] == {name: reasons.count(name) for name in FILTERS}
    assert stats["kept"] == result.stats["kept"] == reasons.count(None)
    good = [i for i, r in enumerate(reasons) if r is None]
    assert read(tmp_path / "d" / "train.en") == [sources[i] for i in good]
    assert read(tmp_path / "d" / "train.de") == [hyps[i] for i in good]


def scripted_teacher(monkeypatch, answer) -> None:
    """The teacher answers each source line with `answer(line)`."""

    class Scripted:
        def translate(self, lines, **options):
            return [answer(line) for line in lines]

    monkeypatch.setattr(distill_workers, "_load_teacher", lambda teacher, config: Scripted())


def write_corpus(folder: Path, sources: list[str]) -> DataConfig:
    folder.mkdir()
    (folder / "train.en").write_text("".join(f"{s}\n" for s in sources))
    (folder / "train.de").write_text("".join(f"{s}\n" for s in sources))
    return source_data(str(folder))


def test_a_teacher_that_says_one_thing_is_an_error(teacher, tmp_path, monkeypatch):
    """The quickstart on a slow CPU: an undertrained teacher answers every sentence with
    "Ein Mann in einem."; each pair passes the per-line filters, the corpus does not."""
    sources = [f"a man with {i} dogs walks" for i in range(200)]
    data = write_corpus(tmp_path / "corpus", sources)
    scripted_teacher(monkeypatch, lambda line: "Ein Mann in einem.")
    out = tmp_path / "d"
    with pytest.raises(DistillError) as e:
        distill(teacher / "run", data, out, DistillConfig())
    message = str(e.value)
    assert "degenerate: 200 of 200 kept lines (100.0%) are 'Ein Mann in einem.'" in message
    assert "filters.max_top_share 0.05" in message and "undertrained (dev BLEU" in message
    assert "\n" not in message
    stats = json.loads((out / "stats.json").read_text())  # written, to look at
    assert stats["top_output"] == {
        "line": "Ein Mann in einem.",
        "lines": 200,
        "share": 1.0,
        "sources": 200,
        "source_share": 1.0,
        "kept_sources": 200,
    }
    assert not (out / "train.de").exists()  # nothing a student could learn from

    # A looser threshold filters again without translating (1: never an error).
    monkeypatch.setattr(distill_workers, "_load_teacher", None)
    loose = DistillConfig(filters=FilterConfig(max_top_share=1.0))
    result = distill(teacher / "run", data, out, loose)
    assert result.stats["kept"] == 200 and len(read(out / "train.de")) == 200
    assert "most frequent output: 200 of 200 kept lines (100.0%)" in result.summary()


def test_top_output_share_threshold(teacher, tmp_path, monkeypatch):
    """Over the threshold is an error, at it is not; a pair repeated by the corpus repeats
    its translation (judged by different sources); a tiny corpus is not judged."""
    sources = [f"a man with {i} dogs walks" for i in range(200)]
    data = write_corpus(tmp_path / "corpus", sources)

    def answer(same: int):
        return lambda line: (
            "ein mann geht" if int(line.split()[3]) < same else f"ein mann mit {line.split()[3]}"
        )

    scripted_teacher(monkeypatch, answer(10))  # 10 of 200 different sources: 5%
    stats = distill(teacher / "run", data, tmp_path / "at", DistillConfig()).stats
    assert stats["top_output"]["lines"] == 10 and stats["top_output"]["share"] == 0.05
    scripted_teacher(monkeypatch, answer(11))
    with pytest.raises(DistillError, match=r"11 of 200 kept lines \(5\.5%\) are 'ein mann geht'"):
        distill(teacher / "run", data, tmp_path / "over", DistillConfig())

    repeated = write_corpus(tmp_path / "repeated", SOURCES * 30)  # 8 sentences, 240 lines
    scripted_teacher(monkeypatch, dict(zip(SOURCES, TARGETS, strict=True)).get)
    top = distill(teacher / "run", repeated, tmp_path / "r", DistillConfig()).stats["top_output"]
    assert top["lines"] == 30 and top["sources"] == 1 and top["kept_sources"] == 8

    tiny = write_corpus(tmp_path / "tiny", sources[:99])  # under top_share_min_sources
    scripted_teacher(monkeypatch, lambda line: "Ein Mann in einem.")
    top = distill(teacher / "run", tiny, tmp_path / "t", DistillConfig()).stats["top_output"]
    assert top["share"] == 1.0 and top["kept_sources"] == 99


# --- configuration -------------------------------------------------------------------------


def test_config_errors_name_the_key(tmp_path):
    assert (
        load_distill_config(None, ["decoding.beam_size=1", "filters.max_ratio=3"]).filters.max_ratio
        == 3
    )
    with pytest.raises(ConfigError, match=r"filters\.max_ratio"):
        load_distill_config(None, ["filters.max_ratio=0.5"])
    with pytest.raises(ConfigError, match="beam_sizes: unknown key"):
        load_distill_config(None, ["beam_sizes=4"])
    with pytest.raises(ConfigError, match="workers"):
        load_distill_config(None, ["workers=0"])
    assert source_data("multi30k").dataset == "multi30k"
    assert source_data(str(tmp_path)).data_dir == str(tmp_path)
    with pytest.raises(ConfigError, match="neither a registered dataset"):
        source_data(str(tmp_path / "nowhere"))


def test_force_never_touches_a_folder_that_is_not_a_distillation(teacher, tmp_path):
    from nmt.outputs import FolderBusyError, FolderLock

    data = toy_data(teacher)
    user = tmp_path / "user"
    (user / "parts").mkdir(parents=True)  # the user's own parts/, nothing of ours
    (user / "parts" / "chapter.txt").write_text("mine\n")
    with pytest.raises(OutputError, match="not made by nmt-distill"):
        distill(teacher / "run", data, user, CONFIG, force=True)
    assert (user / "parts" / "chapter.txt").read_text() == "mine\n"
    for inside in (teacher, teacher / "run", teacher / "run" / "sub"):  # inputs: never
        with pytest.raises(OutputError, match="holds or lies inside the input"):
            distill(teacher / "run", data, inside, CONFIG, force=True)
    with FolderLock(tmp_path / "d", "test"), pytest.raises(FolderBusyError, match="PID"):
        distill(teacher / "run", data, tmp_path / "d", CONFIG)


def test_an_ensemble_of_teachers_distils(teacher, tmp_path):
    """Two members (here one run twice: the ensemble translates as the run does)."""
    data = toy_data(teacher)
    one = distill(teacher / "run", data, tmp_path / "one", CONFIG)
    two = distill([teacher / "run", teacher / "run"], data, tmp_path / "two", CONFIG)
    assert read(tmp_path / "two" / "train.de") == read(tmp_path / "one" / "train.de")
    provenance = json.loads((tmp_path / "two" / "provenance.json").read_text())
    assert len(provenance["teacher"]["members"]) == 2
    assert two.stats["kept"] == one.stats["kept"]


def test_shards_on_several_machines_merge_to_the_one_machine_corpus(teacher, tmp_path, capsys):
    """Three shard runs (as on three machines, their folders copied into one) and a merge
    give the bytes of one run; the merge translates nothing and names what is missing."""
    from dataclasses import replace

    from nmt.cli import distill_main

    data = toy_data(teacher)
    distill(teacher / "run", data, tmp_path / "whole", CONFIG)  # 64 lines: chunks 0..6

    machines = []
    for k in range(3):
        out = tmp_path / f"machine{k}"
        result = distill(teacher / "run", data, out, replace(CONFIG, shard=f"{k}/3"))
        assert result.stats["chunks"] == len(range(k, 7, 3)) and "shard" in result.summary()
        chunks = sorted(p.stem for p in (out / "shards" / f"{k}-of-3" / "parts").glob("0*.json"))
        assert chunks == [f"{i:06d}" for i in range(k, 7, 3)]  # only its own chunks
        assert not (out / "raw.de").exists() and not (out / "train.de").exists()
        machines.append(out)

    merged = tmp_path / "merged"
    (merged / "shards").mkdir(parents=True)
    for k in (0, 2):  # machine 1's shard has not arrived yet
        src = machines[k] / "shards" / f"{k}-of-3"
        (merged / "shards" / src.name).symlink_to(src, target_is_directory=True)
    with pytest.raises(DistillError, match=r"2 of 7 chunks missing, owed by shard\(s\) 1/3"):
        distill(teacher / "run", data, merged, CONFIG, merge=True)

    (merged / "shards" / "1-of-3").symlink_to(machines[1] / "shards" / "1-of-3")
    corrupt = machines[1] / "shards" / "1-of-3" / "parts" / "000004.json"
    good = corrupt.read_bytes()
    corrupt.write_text('{"first_line": 40, "hypotheses": ["too few"]}\n')
    with pytest.raises(DistillError, match=r"000004\.json: corrupt chunk of shard 1-of-3"):
        distill(teacher / "run", data, merged, CONFIG, merge=True)
    corrupt.write_bytes(good)

    def no_translation(*args, **kwargs):
        raise AssertionError("a merge translated a chunk")

    real = distill_workers._translate_chunk
    distill_workers._translate_chunk = no_translation
    try:
        args = ["-t", str(teacher / "run"), "--data", str(teacher / "toy"), "--test", "test"]
        args += ["-o", str(merged), "--beam", "2", "--batch-tokens", "64", "--mix", "--merge"]
        args += ["--set", "chunk_lines=10"]
        assert distill_main(args) == 0
    finally:
        distill_workers._translate_chunk = real
    for name in ("raw.de", "train.en", "train.de", "mix.en", "mix.de"):
        assert (merged / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert not (merged / "shards").exists() and not (merged / "parts").exists()
    with pytest.raises(DistillError, match="complete"):  # nothing left for a shard
        distill(teacher / "run", data, merged, replace(CONFIG, shard="0/3"))


def test_shard_settings_are_checked():
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(ConfigError, match="^shard: K/N"):
            DistillConfig(shard=bad)
    assert DistillConfig(shard="2/5").shard_of == (2, 5)
