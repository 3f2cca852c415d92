"""nmt-prepare: corpora streamed into memory-mapped shards. The shards decode to exactly the
filtered corpus, whatever the input format or number of workers; an interrupted run resumes
to the same bytes; stale folders are named as such; the readers resume exactly, mix corpora
by weight and hold no Python object per pair."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from nmt.cli import COMMANDS, prepare_main
from nmt.config import ConfigError, TokenizerConfig, from_dict
from nmt.data.batching import EpochIterator
from nmt.data.corpus import CorpusError, encode_parallel, read_parallel
from nmt.data.sources import read_chunks
from nmt.outputs import OutputError
from nmt.prepare import worker as prepare_worker
from nmt.prepare import writer as shard_writer
from nmt.prepare.config import CorpusSpec
from nmt.prepare.folder import (
    PrepareConfig,
    PrepareError,
    check_prepared,
    load_prepare_run,
    prepare,
    resolve_corpora,
)
from nmt.prepare.manifest import load_manifest
from nmt.prepare.shards import ShardBatches, ShardedCorpus, ShardError
from nmt.prepare.tokenizer import sample_sentences
from nmt.prepare.writer import PairHashes
from nmt.tokenizer import train_tokenizer
from nmt.vocab import EOS

from .conftest import TOY_PAIRS

ROOT = Path(__file__).resolve().parents[1]
WORDS = sorted({w for pair in TOY_PAIRS for side in pair for w in side.split()})


def random_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7)))

    return [(sentence(), sentence()) for _ in range(n)]


# One pair for each filter (with min_tokens 2, max_tokens 40), and duplicates in the same
# shard and in a later one.
SPECIAL = {
    2: ("", "ein hund rennt"),  # empty
    5: ("a dog", "   "),  # empty (blank)
    9: ("a", "ein hund"),  # too_short
    13: ("a dog runs " * 20, "ein hund rennt " * 20),  # too_long
    17: ("a dog", "ein hund rennt und eine katze schläft und zwei männer spielen"),  # bad_ratio
    21: ("a dog runs", "a dog runs"),  # identical
}


def toy_pairs(n: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    pairs = random_pairs(n, seed)
    for i, pair in SPECIAL.items():
        pairs[i] = pair
    pairs[3] = pairs[1]  # duplicate in the same shard (shard_lines 7)
    pairs[30] = pairs[0]  # duplicate in a later shard
    return pairs


def write_parallel(prefix: Path, pairs: list[tuple[str, str]], packed: bool = False) -> Path:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for lang, side in (("en", 0), ("de", 1)):
        text = "".join(f"{p[side]}\n" for p in pairs).encode()
        path = Path(f"{prefix}.{lang}" + (".gz" if packed else ""))
        path.write_bytes(gzip.compress(text, mtime=0) if packed else text)
    return prefix


def write_tsv(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


def config(*corpora: tuple[str, Path, float], **changes) -> PrepareConfig:
    base = dict(shard_lines=7, min_tokens=2, max_tokens=40)
    base.update(changes)
    specs = [{"name": n, "path": str(p), "weight": w} for n, p, w in corpora]
    return from_dict(PrepareConfig, {"corpora": specs, **base})


def reference(tokenizer, pairs, min_tokens=2, max_tokens=40, max_ratio=3.0):
    """The filtered corpus, computed pair by pair, and the count of each filter."""
    counts, kept, seen = Counter(), [], set()
    for s, t in pairs:
        s, t = s.strip(), t.strip()
        a, b = tokenizer.encode([s])[0], tokenizer.encode([t])[0]
        la, lb = len(a), len(b)
        if not la or not lb:
            counts["empty"] += 1
        elif min(la, lb) < min_tokens:
            counts["too_short"] += 1
        elif max(la, lb) > max_tokens:
            counts["too_long"] += 1
        elif max(la, lb) / min(la, lb) > max_ratio and max(la, lb) > 5:
            counts["bad_ratio"] += 1
        elif s == t:
            counts["identical"] += 1
        elif (tuple(a), tuple(b)) in seen:
            counts["duplicate"] += 1
        else:
            seen.add((tuple(a), tuple(b)))
            kept.append((a + [EOS], b))
    return kept, counts


def decoded(corpus) -> list[tuple[list[int], list[int]]]:
    return [tuple(x.tolist() for x in corpus.pair(i)) for i in range(len(corpus))]


def shard_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}


def manifest_json(out: Path) -> dict:
    data = json.loads((out / "manifest.json").read_text())
    del data["created"]
    return data


# --- the shards -------------------------------------------------------------------------------


def test_shards_decode_to_the_filtered_corpus_with_each_filter_counted(toy_tokenizer, tmp_path):
    pairs = toy_pairs()
    prefix = write_parallel(tmp_path / "data" / "toy", pairs)
    manifest = prepare(config(("toy", prefix, 1.0)), toy_tokenizer, tmp_path / "out")
    kept, counts = reference(toy_tokenizer, pairs)
    assert decoded(manifest.corpus()) == kept
    filtered = manifest.corpora[0].filtered
    for name in ("empty", "too_short", "too_long", "bad_ratio", "identical", "duplicate"):
        assert getattr(filtered, name) == counts[name] > 0, name
    assert counts["empty"] == 2 and counts["duplicate"] == 2
    assert filtered.kept == manifest.pairs == len(kept) and filtered.total == len(pairs)
    # The manifest describes the folder: sources, tokenizer, shards with checksums.
    assert manifest.lines == 40 and len(manifest.shards) == 6 and manifest.dtype == "uint16"
    assert manifest.tokenizer.sha256 == toy_tokenizer.sha256()
    assert manifest.tokenizer.vocab_size == toy_tokenizer.vocab_size
    assert (tmp_path / "out" / "spm.model").read_bytes() == toy_tokenizer.model_proto
    assert [f.path for f in manifest.corpora[0].files] == [f"{prefix}.en", f"{prefix}.de"]
    assert sum(s.pairs for s in manifest.shards) == len(kept)
    assert load_manifest(tmp_path / "out") == manifest
    assert check_prepared(config(("toy", prefix, 1.0)), toy_tokenizer, tmp_path / "out") is None


def test_the_same_pairs_as_encode_parallel(toy_tokenizer, tmp_path, monkeypatch):
    """Without the two new filters, prepare keeps exactly what the in-memory path keeps
    (chunks encoded in slices of 3 lines here, of 10,000 by default)."""
    monkeypatch.setattr(prepare_worker, "ENCODE_LINES", 3)
    pairs = toy_pairs()
    prefix = write_parallel(tmp_path / "data" / "toy", pairs)
    c = config(("toy", prefix, 1.0), drop_identical=False, dedup=False)
    manifest = prepare(c, toy_tokenizer, tmp_path / "out")
    encoded = encode_parallel(
        *read_parallel(f"{prefix}.en", f"{prefix}.de"), toy_tokenizer, min_tokens=2, max_tokens=40
    )
    expected = [(s.tolist(), t.tolist()) for s, t in zip(encoded.src, encoded.tgt, strict=True)]
    assert decoded(manifest.corpus()) == expected
    stats = dataclasses.asdict(encoded.stats)
    got = dataclasses.asdict(manifest.filtered)
    assert {k: got[k] for k in stats} == stats


def test_gzip_and_tsv_inputs_give_the_same_shards(toy_tokenizer, tmp_path):
    pairs = toy_pairs()
    inputs = {
        "plain": write_parallel(tmp_path / "plain" / "toy", pairs),
        "gzip": write_parallel(tmp_path / "gzip" / "toy", pairs, packed=True),
        "tsv": write_tsv(tmp_path / "tsv" / "toy.tsv", pairs),
    }
    shards = {}
    for kind, path in inputs.items():
        manifest = prepare(config(("toy", path, 1.0)), toy_tokenizer, tmp_path / f"out-{kind}")
        assert manifest.corpora[0].format == ("tsv" if kind == "tsv" else "parallel")
        shards[kind] = shard_files(tmp_path / f"out-{kind}")
    assert shards["plain"] == shards["gzip"] == shards["tsv"]


def test_workers_give_identical_shards(toy_tokenizer, tmp_path):
    a = write_parallel(tmp_path / "data" / "a", toy_pairs(40, 0))
    b = write_tsv(tmp_path / "data" / "b.tsv", toy_pairs(35, 1))
    c = config(("a", a, 0.7), ("b", b, 0.3))
    one = prepare(c, toy_tokenizer, tmp_path / "one", workers=1)
    two = prepare(c, toy_tokenizer, tmp_path / "two", workers=2)
    assert shard_files(tmp_path / "one") == shard_files(tmp_path / "two")
    assert one.shards == two.shards and one.corpora == two.corpora


def test_an_interrupted_run_resumes_to_the_same_bytes(toy_tokenizer, tmp_path, monkeypatch):
    prefix = write_parallel(tmp_path / "data" / "toy", toy_pairs())
    c = config(("toy", prefix, 1.0))
    prepare(c, toy_tokenizer, tmp_path / "whole")
    calls = []
    real = shard_writer.encode_chunk

    def killed_after(k):
        def encode(*args, **kwargs):
            calls.append(1)
            if len(calls) > k:
                raise RuntimeError("killed")
            return real(*args, **kwargs)

        return encode

    out = tmp_path / "out"
    monkeypatch.setattr(shard_writer, "encode_chunk", killed_after(3))
    with pytest.raises(RuntimeError, match="killed"):
        prepare(c, toy_tokenizer, out)
    assert len(shard_files(out)) == 3 and not (out / "manifest.json").exists()
    assert "not prepared, or its preparation did not finish" in check_prepared(
        c, toy_tokenizer, out
    )
    calls.clear()
    monkeypatch.setattr(shard_writer, "encode_chunk", killed_after(100))
    prepare(c, toy_tokenizer, out)
    assert len(calls) == 6 - 3  # only the missing shards
    assert shard_files(out) == shard_files(tmp_path / "whole")
    assert manifest_json(out) == manifest_json(tmp_path / "whole")
    # A shard deleted from a finished folder: only it is made again, the same.
    before = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    (out / "shards" / "toy.00002.shard").unlink()
    assert "toy.00002.shard is missing" in check_prepared(c, toy_tokenizer, out)
    calls.clear()
    prepare(c, toy_tokenizer, out)
    assert len(calls) == 1
    assert shard_files(out) == shard_files(tmp_path / "whole")
    after = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    assert {n for n in after if after[n] != before.get(n)} == {"toy.00002.shard"}
    # Up to date: nothing is encoded at all.
    calls.clear()
    prepare(c, toy_tokenizer, out)
    assert not calls


def test_a_changed_source_or_tokenizer_makes_the_folder_stale(toy_tokenizer, tmp_path):
    prefix = write_parallel(tmp_path / "data" / "toy", toy_pairs())
    c = config(("toy", prefix, 1.0))
    out = tmp_path / "out"
    prepare(c, toy_tokenizer, out)
    en = Path(f"{prefix}.en")
    en.write_text(en.read_text().replace("dog", "cat", 1))
    line = check_prepared(c, toy_tokenizer, out)
    assert line.startswith(f"{out}: stale: {en} changed since it was prepared (sha256 ")
    assert "\n" not in line
    with pytest.raises(PrepareError, match="stale: .*toy.en changed.*--force"):
        prepare(c, toy_tokenizer, out)
    prepare(c, toy_tokenizer, out, force=True)
    assert check_prepared(c, toy_tokenizer, out) is None
    other = train_tokenizer(
        [s for p in TOY_PAIRS for s in p] * 3,
        TokenizerConfig(vocab_size=50, byte_fallback=False),
        tmp_path / "other.model",
    )
    assert check_prepared(c, other, out).startswith(f"{out}: stale: the tokenizer changed")
    assert "max_tokens changed (40 -> 30)" in check_prepared(
        dataclasses.replace(c, max_tokens=30), toy_tokenizer, out
    )
    # Weights only decide how batches are drawn: the shards stay, the manifest follows.
    reweighted = config(("toy", prefix, 0.5))
    assert check_prepared(reweighted, toy_tokenizer, out) is None
    manifest = prepare(reweighted, toy_tokenizer, out)
    assert manifest.corpora[0].weight == load_manifest(out).corpora[0].weight == 0.5
    assert manifest.corpora[0].filtered.kept == manifest.pairs


def test_force_never_touches_a_users_files(toy_tokenizer, tmp_path):
    prefix = write_parallel(tmp_path / "data" / "toy", toy_pairs())
    c = config(("toy", prefix, 1.0))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for force in (False, True):
        with pytest.raises(OutputError, match="not made by nmt-prepare"):
            prepare(c, toy_tokenizer, out, force=force)
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(OutputError, match="holds or lies inside the input"):
        prepare(c, toy_tokenizer, tmp_path / "data", force=True)
    assert Path(f"{prefix}.en").is_file()
    # An spm.model is nmt-prepare's only in a folder it prepared.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "spm.model").write_bytes(b"a user's model")
    with pytest.raises(OutputError, match="not made by nmt-prepare"):
        prepare(c, TokenizerConfig(vocab_size=60, byte_fallback=False), mine, force=True)
    assert (mine / "spm.model").read_bytes() == b"a user's model"


def test_a_tokenizer_is_trained_on_a_weighted_sample_and_reused(
    toy_tokenizer, tmp_path, monkeypatch
):
    a = write_parallel(tmp_path / "data" / "a", toy_pairs(40, 0))
    b = write_parallel(tmp_path / "data" / "b", [(f"x{i} y", f"z{i} w") for i in range(40)])
    c = config(("a", a, 0.7), ("b", b, 0.3), tokenizer_sentences=20, seed=5)
    sample = sample_sentences(c, resolve_corpora(c))
    assert len(sample) == 20
    assert sum(s.startswith("x") for s in sample) == 3  # b's share: 30% of 10 pairs
    assert sample == sample_sentences(c, resolve_corpora(c))  # seeded
    spec = TokenizerConfig(vocab_size=70, byte_fallback=False)
    manifest = prepare(c, spec, tmp_path / "out")
    assert manifest.tokenizer.source.startswith("trained here")
    model = (tmp_path / "out" / "spm.model").read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr("nmt.prepare.tokenizer.train_tokenizer", no_training)
    assert prepare(c, spec, tmp_path / "out") == manifest
    assert check_prepared(c, spec, tmp_path / "out") is None
    assert (tmp_path / "out" / "spm.model").read_bytes() == model


# --- the readers ------------------------------------------------------------------------------


@pytest.fixture
def two_corpora(toy_tokenizer, tmp_path):
    """A prepared folder of two corpora, 60 and 20 pairs, weights 0.3 and 0.7."""
    big = write_parallel(tmp_path / "data" / "big", random_pairs(60, 1))
    small = write_parallel(tmp_path / "data" / "small", random_pairs(20, 2))
    c = config(("big", big, 0.3), ("small", small, 0.7), shard_lines=5, dedup=False)
    return prepare(c, toy_tokenizer, tmp_path / "out")


@pytest.mark.parametrize("mixing", ["weighted", "concat"])
def test_batches_resume_exactly(two_corpora, mixing):
    table = dataclasses.replace(two_corpora.table(), mixing=mixing)
    batches = ShardBatches(ShardedCorpus(table), 64, seed=3, window_shards=2)
    stream, states = [], []
    while batches.epoch < 2 or len(stream) < 50:  # several windows and epochs
        states.append(batches.state())
        stream.append(next(batches))
    for at in (0, len(stream) // 3, 2 * len(stream) // 3):
        resumed = ShardBatches(ShardedCorpus(table), 64, seed=3, window_shards=2, **states[at])
        for expected in stream[at:]:
            for x, y in zip(next(resumed), expected, strict=True):
                assert torch.equal(x, y)
    assert set(states[-1]) == {"epoch", "window", "index"}
    assert all(type(v) is int for v in states[-1].values())


def test_concat_epochs_visit_every_pair_once(two_corpora):
    table = dataclasses.replace(two_corpora.table(), mixing="concat")
    batches = ShardBatches(ShardedCorpus(table), 40, seed=1, window_shards=3)
    seen = []
    while True:
        batch = batches.next_indices().tolist()
        if batches.epoch:  # the first batch of epoch 1
            break
        seen += batch
    assert sorted(seen) == list(range(two_corpora.pairs))


def test_weighted_batches_draw_each_corpus_by_its_weight(two_corpora):
    corpus = two_corpora.corpus()
    batches = ShardBatches(corpus, 40, seed=7, window_shards=2)
    drawn = np.concatenate([batches.next_indices() for _ in range(400)])
    shares = np.bincount(corpus.corpus_of(drawn), minlength=2) / len(drawn)
    assert shares == pytest.approx([0.3, 0.7], abs=0.02)  # natural sizes: 0.75, 0.25
    counts = Counter(drawn.tolist())  # the small corpus is repeated, the big one is not
    assert max(counts[i] for i in range(60)) < max(counts[i] for i in range(60, 80))


def test_epoch_iterator_works_unchanged_on_the_shards(toy_tokenizer, tmp_path):
    """nmt.data.batching on the memory-mapped corpus gives the batches it gives in memory."""
    prefix = write_parallel(tmp_path / "data" / "toy", random_pairs(80, 3))
    c = config(("toy", prefix, 1.0), drop_identical=False, dedup=False)
    shards = prepare(c, toy_tokenizer, tmp_path / "out").corpus()
    memory = encode_parallel(
        *read_parallel(f"{prefix}.en", f"{prefix}.de"), toy_tokenizer, min_tokens=2, max_tokens=40
    )
    assert np.array_equal(shards.src_lengths, memory.src_lengths)
    assert np.array_equal(shards.tgt_lengths, memory.tgt_lengths)
    a, b = EpochIterator(shards, 48, seed=2), EpochIterator(memory, 48, seed=2)
    for _ in range(40):
        for x, y in zip(next(a), next(b), strict=True):
            assert torch.equal(x, y)
    assert a.state() == b.state()


def _held(obj, seen: set[int], memmapped: bool = False):
    """(what, size) of every container and in-memory array reachable from `obj`'s fields."""
    if id(obj) in seen or isinstance(obj, str | bytes | int | float | Path | type(None)):
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        base = obj
        while base is not None and not isinstance(base, np.memmap):
            base = base.base
        if base is None:  # memory maps are file pages, not the process's own memory
            yield "array", obj.size
        return
    if isinstance(obj, dict):
        yield "dict", len(obj)
        items = [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set):
        yield type(obj).__name__, len(obj)
        items = list(obj)
    elif hasattr(obj, "__dict__"):
        items = list(vars(obj).values())
    else:
        return
    for item in items:
        yield from _held(item, seen)


def test_readers_hold_no_object_per_pair(toy_tokenizer, tmp_path):
    prefix = write_parallel(tmp_path / "data" / "toy", random_pairs(400, 4))
    c = config(("toy", prefix, 1.0), shard_lines=10, dedup=False)
    manifest = prepare(c, toy_tokenizer, tmp_path / "out")
    pairs, shards = manifest.pairs, len(manifest.shards)
    assert pairs > 350 and shards == 40
    corpus = manifest.corpus()
    for i in range(0, pairs, 7):
        corpus.pair(i)
    held = list(_held(corpus, set()))
    assert max(size for _, size in held) <= shards + 1  # per-shard tables only
    batches = manifest.batches(64, seed=0, window_shards=2)
    for _ in range(100):
        next(batches)
    held = list(_held(batches, set()))
    assert max(size for _, size in held) <= shards + 1  # shard tables, the window's 20 pairs
    assert sum(size for kind, size in held if kind == "array") < pairs


# --- pieces -----------------------------------------------------------------------------------


def test_pair_hashes_is_a_set():
    rng = np.random.default_rng(0)
    hashes, reference_set = PairHashes(), set()
    for _ in range(50):
        batch = rng.integers(0, 3000, size=rng.integers(0, 200), dtype=np.uint64)
        new = hashes.first_seen(batch)
        expected, seen_here = [], set()
        for h in batch.tolist():
            expected.append(h not in reference_set and h not in seen_here)
            seen_here.add(h)
        reference_set |= seen_here
        assert new.tolist() == expected
    assert len(hashes) == len(reference_set)
    assert len(hashes._runs) <= 2 * int(np.log2(len(reference_set))) + 1


def test_malformed_inputs_name_the_file_and_line(tmp_path):
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("a\tb\nc d\ne\tf\n")
    c = config(("bad", tsv, 1.0))
    with pytest.raises(CorpusError, match=rf"^{tsv}:2: expected one tab .* found 0$"):
        list(read_chunks(resolve_corpora(c)[0], 7))
    prefix = write_parallel(tmp_path / "short", [("a", "b"), ("c", "d")])
    Path(f"{prefix}.de").write_text("b\n")
    with pytest.raises(CorpusError, match=rf"^{prefix}.de:2: line missing"):
        list(read_chunks(resolve_corpora(config(("s", prefix, 1.0)))[0], 7))
    Path(f"{prefix}.de").write_bytes(b"b\n\xff\n")
    with pytest.raises(CorpusError, match=rf"^{prefix}.de:2: invalid UTF-8"):
        list(read_chunks(resolve_corpora(config(("s", prefix, 1.0)))[0], 7))
    with pytest.raises(CorpusError, match="nothing.en: file not found"):
        resolve_corpora(config(("n", tmp_path / "nothing", 1.0)))
    crlf = write_tsv(tmp_path / "crlf.tsv", [("a\x00b", "c\r")])
    chunk = next(read_chunks(resolve_corpora(config(("c", crlf, 1.0)))[0], 7))
    assert (chunk.src, chunk.tgt, chunk.crlf, chunk.control) == (["a b"], ["c"], 1, 1)


def test_config_errors_name_the_key():
    def load(values):
        return from_dict(PrepareConfig, values, "prepare.")

    with pytest.raises(ConfigError, match=r"^prepare\.corpora\[1\]\.wieght: unknown key"):
        load({"corpora": [{"name": "a", "path": "a"}, {"name": "b", "path": "b", "wieght": 1}]})
    with pytest.raises(ConfigError, match=r"^prepare\.corpora\[0\]\.weight: must be"):
        load({"corpora": [{"name": "a", "path": "a", "weight": -1}]})
    with pytest.raises(ConfigError, match=r"^prepare\.corpora\[0\]\.path: missing"):
        load({"corpora": [{"name": "a"}]})
    with pytest.raises(ConfigError, match=r"^prepare\.corpora: names must differ, a given"):
        load({"corpora": [{"name": "a", "path": "a"}, {"name": "a", "path": "b"}]})
    with pytest.raises(ConfigError, match=r"^prepare\.shard_lines: must be >= 1"):
        load({"shard_lines": 0})
    with pytest.raises(ConfigError, match=r"^prepare\.mixing: must be one of weighted, concat"):
        load({"mixing": "random"})


def test_the_example_config_loads():
    run = load_prepare_run(ROOT / "models" / "prepare" / "multi30k-tatoeba.yaml")
    assert [(c.name, c.weight) for c in run.prepare.corpora] == [
        ("multi30k", 0.7),
        ("tatoeba", 0.3),
    ]
    assert run.tokenizer.model == "models/multi30k-tiny/spm.model"
    assert run.prepare.data_dir == "../shared/data"
    assert (
        load_prepare_run(
            ROOT / "models" / "prepare" / "multi30k-tatoeba.yaml", data_dir="/d"
        ).prepare.data_dir
        == "/d"
    )


def test_cli(toy_tokenizer, tmp_path, capsys):
    assert COMMANDS["prepare"] is prepare_main
    prefix = write_parallel(tmp_path / "data" / "toy", toy_pairs())
    model = tmp_path / "spm.model"
    model.write_bytes(toy_tokenizer.model_proto)
    path = tmp_path / "prepare.yaml"
    path.write_text(
        f"output_dir: {tmp_path / 'out'}\ntokenizer:\n  model: {model}\n"
        f"prepare:\n  shard_lines: 10\n  corpora:\n    - {{name: toy, path: toy}}\n"
    )
    assert prepare_main(["--config", str(path), "--data-dir", str(prefix.parent)]) == 0
    kept = len(reference(toy_tokenizer, toy_pairs(), max_tokens=256, min_tokens=1)[0])
    assert f"kept {kept} of 40 pairs" in capsys.readouterr().out
    run = load_prepare_run(path, str(prefix.parent))
    assert check_prepared(run.prepare, run.tokenizer, run.output_dir) is None
    Path(f"{prefix}.en").write_text(Path(f"{prefix}.en").read_text().upper())
    assert prepare_main(["--config", str(path), "--data-dir", str(prefix.parent)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "stale" in err and "\n" not in err
    assert prepare_main(["-c", str(path), "--data-dir", str(prefix.parent), "--force"]) == 0
    path.write_text(path.read_text().replace("shard_lines", "shard_line"))
    assert prepare_main(["--config", str(path)]) == 2
    assert "prepare.shard_line: unknown key" in capsys.readouterr().err
    with pytest.raises(ShardError, match="not prepared"):
        load_manifest(tmp_path / "data")


def test_nmt_train_reads_prepared_shards_as_it_reads_the_corpus(tmp_path):
    """`data.prepared`: the same pairs (filters alike, no dedup) train to the same losses
    and weights as the in-memory corpus; the run takes the folder's tokenizer."""
    from nmt.checkpoint import load_checkpoint
    from nmt.training.run import train

    from .test_train import toy_config, train_losses
    from .toys import write_toy_corpus

    corpus = write_toy_corpus(tmp_path / "toy")
    base = ("train.max_steps=12", "data.max_tokens=40", "data.min_tokens=1")
    train(toy_config(tmp_path / "memory", corpus, *base))
    spm = tmp_path / "memory" / "spm.model"
    c = PrepareConfig(
        corpora=(CorpusSpec(name="toy", path=str(corpus / "train")),),
        mixing="concat",
        max_tokens=40,
        min_tokens=1,
        max_ratio=3.0,
        drop_identical=False,
        dedup=False,
    )
    prepare(c, spm, tmp_path / "prepared")
    train(toy_config(tmp_path / "shards", corpus, *base, f"data.prepared={tmp_path / 'prepared'}"))
    assert train_losses(tmp_path / "shards") == train_losses(tmp_path / "memory")
    a = load_checkpoint(tmp_path / "memory" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "shards" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = tmp_path / "other.model"
    texts = [t for pair in TOY_PAIRS for t in pair] * 4
    train_tokenizer(texts, TokenizerConfig(vocab_size=50, byte_fallback=False), other)
    with pytest.raises(ConfigError, match=r"^data.prepared: .* was prepared with tokenizer"):
        train(
            toy_config(
                tmp_path / "third",
                corpus,
                *base,
                f"data.prepared={tmp_path / 'prepared'}",
                f"tokenizer.model={other}",
            )
        )


def test_nmt_train_mixes_prepared_corpora_by_weight_and_resumes_exactly(tmp_path):
    """Two prepared corpora weighted 0.7/0.3: nmt-train draws its batches window by window
    (ShardBatches); a run stopped half-way and resumed equals an uninterrupted one."""
    from nmt.checkpoint import load_checkpoint
    from nmt.training.run import train

    from .test_train import toy_config, train_losses
    from .toys import write_toy_corpus

    corpus = write_toy_corpus(tmp_path / "toy")
    train(toy_config(tmp_path / "tok", corpus, "train.max_steps=1"))  # its tokenizer
    a = write_parallel(tmp_path / "data" / "a", random_pairs(60, 1))
    b = write_parallel(tmp_path / "data" / "b", random_pairs(200, 2))
    prepared = tmp_path / "prepared"
    manifest = prepare(
        config(("a", a, 0.7), ("b", b, 0.3)), tmp_path / "tok" / "spm.model", prepared
    )
    assert manifest.mixing == "weighted"
    run = ("data.max_tokens=40", f"data.prepared={prepared}", "train.save_every=5")
    train(toy_config(tmp_path / "full", corpus, *run, "train.max_steps=20"))
    train(toy_config(tmp_path / "part", corpus, *run, "train.max_steps=10"))
    train(toy_config(tmp_path / "part", corpus, *run, "train.max_steps=20"), resume=True)
    assert train_losses(tmp_path / "part") == train_losses(tmp_path / "full")
    x = load_checkpoint(tmp_path / "full" / "last.pt")
    y = load_checkpoint(tmp_path / "part" / "last.pt")
    assert set(x["data"]) == {"epoch", "window", "index"}  # the shard stream's position
    assert all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"])


def test_nmt_train_prepares_a_missing_or_stale_folder_itself(tmp_path, caplog):
    """`data.prepared: PREPARE.yaml`: nmt-train runs nmt-prepare first when its folder is
    missing or stale, and uses it as it is when it is up to date."""
    from nmt.cli import train_main
    from nmt.training.run import train

    from .test_train import toy_config, toy_overrides
    from .toys import write_toy_corpus

    corpus = write_toy_corpus(tmp_path / "toy")
    train(toy_config(tmp_path / "tok", corpus, "train.max_steps=1"))  # its tokenizer
    source = write_parallel(tmp_path / "data" / "a", random_pairs(60, 1))
    yaml_path = tmp_path / "prepare.yaml"
    yaml_path.write_text(
        f"output_dir: {tmp_path / 'prepared'}\n"
        f"tokenizer:\n  model: {tmp_path / 'tok' / 'spm.model'}\n"
        f"prepare:\n  max_tokens: 40\n  corpora:\n    - {{name: a, path: {source}}}\n"
    )
    run = ("data.max_tokens=40", f"data.prepared={yaml_path}", "train.max_steps=2")
    with caplog.at_level(logging.INFO, logger="nmt.prepare.folder"):
        summary = train(toy_config(tmp_path / "first", corpus, *run))
    assert "not prepared" in caplog.text and summary["steps"] == 2
    assert (tmp_path / "prepared" / "manifest.json").is_file()
    made = shard_files(tmp_path / "prepared")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nmt.prepare.folder"):
        train(toy_config(tmp_path / "second", corpus, *run))
    assert "preparing" not in caplog.text  # up to date: used as it is
    assert shard_files(tmp_path / "prepared") == made

    write_parallel(source, random_pairs(50, 3))  # the source changes: stale
    with caplog.at_level(logging.INFO, logger="nmt.prepare.folder"):
        train(toy_config(tmp_path / "third", corpus, *run))
    assert "stale" in caplog.text and shard_files(tmp_path / "prepared") != made
    assert manifest_json(tmp_path / "prepared")["corpora"][0]["lines"] == 50

    yaml_path.write_text(yaml_path.read_text().replace("max_tokens", "max_token"))
    overrides = toy_overrides(tmp_path / "fourth", corpus, *run)
    assert train_main([x for o in overrides for x in ("--set", o)]) == 2
    assert not (tmp_path / "fourth" / "last.pt").exists()


def test_one_weighted_corpus_is_streamed_a_window_at_a_time(tmp_path):
    """`mixing: weighted` (the default) streams even one corpus through ShardBatches (flat
    memory, benchmarks/results/scale); `concat` batches over the whole corpus."""
    from nmt.checkpoint import load_checkpoint
    from nmt.training.run import train

    from .test_train import toy_config
    from .toys import write_toy_corpus

    corpus = write_toy_corpus(tmp_path / "toy")
    train(toy_config(tmp_path / "tok", corpus, "train.max_steps=1"))  # its tokenizer
    source = write_parallel(tmp_path / "data" / "a", random_pairs(60, 1))
    for mixing in ("weighted", "concat"):
        out = tmp_path / f"prepared-{mixing}"
        prepare(config(("a", source, 1.0), mixing=mixing), tmp_path / "tok" / "spm.model", out)
        run = ("data.max_tokens=40", f"data.prepared={out}", "train.max_steps=3")
        train(toy_config(tmp_path / mixing, corpus, *run))
        position = load_checkpoint(tmp_path / mixing / "last.pt")["data"]
        streamed = set(position) == {"epoch", "window", "index"}
        assert streamed == (mixing == "weighted"), (mixing, position)
