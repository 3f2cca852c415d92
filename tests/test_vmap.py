"""Vocabulary maps: the rules hold the translations, limits hold, the file is what
CTranslate2 reads, and a map built from the training corpus leaves a trained model's greedy
output on that corpus unchanged."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter, defaultdict
from types import SimpleNamespace

import pytest

ctranslate2 = pytest.importorskip("ctranslate2")

from nmt.backends.ct2 import CT2Translator  # noqa: E402
from nmt.checkpoint import find_checkpoint, load_checkpoint  # noqa: E402
from nmt.cli import evaluate_main  # noqa: E402
from nmt.data.corpus import CorpusError  # noqa: E402
from nmt.export.ct2 import export_ct2, read_export_info  # noqa: E402
from nmt.fileio import file_sha256  # noqa: E402
from nmt.outputs import MARKER  # noqa: E402
from nmt.training.run import train  # noqa: E402
from nmt.vmap import (  # noqa: E402
    SPECIAL_PIECES,
    VmapError,
    VocabMap,
    build_vmap,
    build_vmap_from_files,
    info_path,
    read_vmap,
    tokenizer_from,
    translation_table,
    write_vmap,
)

from .conftest import TOY_PAIRS  # noqa: E402
from .test_export_ct2 import random_state, write_toy_corpus  # noqa: E402
from .test_train import toy_config  # noqa: E402

SOURCES = [s for s, _ in TOY_PAIRS]
TARGETS = [t for _, t in TOY_PAIRS]

# Words that recur in different company, so that only real alignment ranks them first.
ANIMALS = [("dog", "hund"), ("cat", "katze"), ("horse", "pferd"), ("bird", "vogel")]
VERBS = [("runs", "rennt"), ("sleeps", "schläft"), ("eats", "frisst"), ("jumps", "springt")]


def animal_corpus() -> tuple[list[list[str]], list[list[str]]]:
    """Every animal with every verb, half of the sentences with a full stop."""
    src, tgt = [], []
    for k, ((a_en, a_de), (v_en, v_de)) in enumerate(itertools.product(ANIMALS, VERBS)):
        stop = ["."] if k % 2 else []
        src.append(["the", a_en, v_en, *stop])
        tgt.append(["der", a_de, v_de, *stop])
    return src, tgt


def random_corpus(seed: int = 0, pairs: int = 300) -> tuple[list[list[str]], list[list[str]]]:
    """Random sentences over a small vocabulary with Zipf-like piece frequencies."""
    rng = random.Random(seed)
    src_vocab, tgt_vocab = [f"s{i}" for i in range(80)], [f"t{i}" for i in range(90)]
    weights = [1 / (i + 1) for i in range(90)]
    src = [rng.choices(src_vocab, weights[:80], k=rng.randint(1, 12)) for _ in range(pairs)]
    tgt = [rng.choices(tgt_vocab, weights, k=rng.randint(1, 12)) for _ in range(pairs)]
    return src, tgt


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A toy model trained to reproduce TOY_PAIRS, its tokenizer and its corpus."""
    root = tmp_path_factory.mktemp("vmap")
    corpus = write_toy_corpus(root / "toy")
    train(toy_config(root / "run", corpus, "train.max_steps=250", "train.save_every=1000"))
    ckpt = find_checkpoint(root / "run")
    state = load_checkpoint(ckpt)
    return SimpleNamespace(
        root=root, corpus=corpus, ckpt=ckpt, state=state, tokenizer=tokenizer_from(ckpt)
    )


# --- what the rules hold --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ibm1", "cooccurrence"])
def test_rules_hold_the_obvious_translations(method):
    src, tgt = animal_corpus()
    vmap = build_vmap(src, tgt, top_k=3, frequent=0, method=method)
    for en, de in ANIMALS + VERBS:
        assert de in vmap.rules[en], (en, vmap.rules[en])
    assert vmap.always == SPECIAL_PIECES


def test_ibm1_ranks_the_translation_first_where_cooccurrence_cannot():
    """Every source word co-occurs with 'der' (and half of the time with '.') as often as
    with its translation: only EM puts the translation first."""
    src, tgt = animal_corpus()
    vmap = build_vmap(src, tgt, top_k=1, frequent=0, method="ibm1")
    assert {en: vmap.rules[en] for en, _ in ANIMALS + VERBS} == {
        en: (de,) for en, de in ANIMALS + VERBS
    }
    assert vmap.rules["the"] == ("der",) and vmap.rules["."] == (".",)
    counts = build_vmap(src, tgt, top_k=1, frequent=0, method="cooccurrence")
    assert counts.rules["dog"] == counts.rules["runs"] == ("der",)  # tied at 1, seen first
    table = translation_table(src, tgt, method="ibm1")
    assert table["dog"]["hund"] > 0.9
    assert all(abs(sum(row.values()) - 1.0) < 1e-9 for row in table.values())


def reference_ibm1(src, tgt, iterations):
    """IBM Model 1 (target given source + NULL) written as in the textbook."""
    t = defaultdict(lambda: 1.0)
    for _ in range(iterations):
        count, total = defaultdict(float), defaultdict(float)
        for s_words, t_words in zip(src, tgt, strict=True):
            s_words = [*s_words, None]
            for w in t_words:
                z = sum(t[s, w] for s in s_words)
                for s in s_words:
                    count[s, w] += t[s, w] / z
                    total[s] += t[s, w] / z
        t = defaultdict(float, {(s, w): c / total[s] for (s, w), c in count.items()})
    return t


@pytest.mark.parametrize("iterations", [1, 3])
def test_vectorised_ibm1_equals_the_textbook_loop(iterations):
    src, tgt = random_corpus(pairs=60)
    expected = reference_ibm1(src, tgt, iterations)
    table = translation_table(src, tgt, method="ibm1", iterations=iterations)
    got = {(s, w): p for s, row in table.items() for w, p in row.items()}
    assert got.keys() == {k for k in expected if k[0] is not None}
    assert all(got[k] == pytest.approx(expected[k], rel=1e-9) for k in got)


def test_cooccurrence_counts_sentence_pairs():
    src, tgt = random_corpus(pairs=60)
    with_s = Counter(w for s in src for w in set(s))
    both = Counter((a, b) for s, t in zip(src, tgt, strict=True) for a in set(s) for b in set(t))
    table = translation_table(src, tgt, method="cooccurrence")
    got = {(s, w): p for s, row in table.items() for w, p in row.items()}
    assert got == pytest.approx({(a, b): n / with_s[a] for (a, b), n in both.items()})


# --- limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("top_k, frequent", [(3, 5), (1, 0), (10, 20)])
def test_top_k_and_frequent_limits_hold(top_k, frequent):
    src, tgt = random_corpus()
    vmap = build_vmap(src, tgt, top_k=top_k, frequent=frequent)
    freq = Counter(p for t in tgt for p in t)
    most = [p for p, _ in sorted(freq.items(), key=lambda kv: -kv[1])[:frequent]]
    assert vmap.always[: len(SPECIAL_PIECES)] == SPECIAL_PIECES
    assert set(vmap.always[len(SPECIAL_PIECES) :]) == set(most)
    assert vmap.rules and all(1 <= len(t) <= top_k for t in vmap.rules.values())
    assert not any(set(t) & set(vmap.always) for t in vmap.rules.values())
    assert set(vmap.rules) <= {p for s in src for p in s}
    # Each rule is the source piece's best targets, in order.
    table = translation_table(src, tgt)
    for s, targets in vmap.rules.items():
        scores = [table[s][t] for t in targets]
        rest = [p for t, p in table[s].items() if t not in targets and t not in vmap.always]
        assert scores == sorted(scores, reverse=True) and min(scores) >= max(rest, default=0)


def test_zero_limits_and_min_prob():
    src, tgt = random_corpus()
    assert build_vmap(src, tgt, top_k=0, frequent=0).rules == {}
    assert build_vmap(src, tgt, top_k=0, frequent=0, specials=()).always == ()
    pruned = build_vmap(src, tgt, top_k=50, frequent=0, min_prob=0.05)
    table = translation_table(src, tgt)
    assert all(table[s][t] >= 0.05 for s, ts in pruned.rules.items() for t in ts)
    full = build_vmap(src, tgt, top_k=50, frequent=0)
    assert sum(map(len, pruned.rules.values())) < sum(map(len, full.rules.values()))


def test_allowed_is_the_union_over_the_batch_with_ngrams():
    vmap = VocabMap(("</s>",), {"a": ("x",), "b": ("y",), "a b": ("z",), "c": ()})
    assert vmap.allowed([]) == {"</s>"}
    assert vmap.allowed([["a"]]) == {"</s>", "x"}
    assert vmap.allowed([["b", "a"]]) == {"</s>", "x", "y"}  # no "a b" bigram here
    assert vmap.allowed([["c", "a", "b"]]) == {"</s>", "x", "y", "z"}
    assert vmap.allowed([["a"], ["b"]]) == {"</s>", "x", "y"}


# --- the file ---------------------------------------------------------------------------------


def test_file_format_is_exact_and_round_trips(tmp_path):
    vmap = VocabMap(("</s>", "<unk>", "▁der"), {"▁dog": ("▁Hund", "e"), "▁the": ("▁die",)})
    path = write_vmap(vmap, tmp_path / "vmap.txt")
    assert path.read_bytes() == "\t</s> <unk> ▁der\n▁dog\t▁Hund e\n▁the\t▁die\n".encode()
    assert read_vmap(path) == vmap
    assert not info_path(path).exists()  # no build info, no sidecar


def test_written_map_records_how_it_was_built(tmp_path, trained):
    vmap = build_vmap_from_files(
        trained.corpus / "train.en",
        trained.corpus / "train.de",
        trained.tokenizer,
        top_k=7,
        frequent=3,
    )
    path = write_vmap(vmap, tmp_path / "out" / "vmap.txt")
    info = json.loads(info_path(path).read_text())
    assert info["top_k"] == 7 and info["frequent"] == 3 and info["method"] == "ibm1"
    assert info["pairs"] == 8 * len(TOY_PAIRS)
    assert info["tokenizer_sha256"] == trained.tokenizer.sha256()
    assert info["src"].endswith("train.en")
    assert info["sha256"] == file_sha256(path)
    assert read_vmap(path) == vmap  # `info` is not part of the comparison


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = write_vmap(VocabMap(("</s>",), {"a": ("b",)}), tmp_path / "vmap.txt")
    before = path.read_bytes()

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("nmt.fileio.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_vmap(VocabMap(("</s>",), {"c": ("d",)}), path, force=True)
    assert path.read_bytes() == before
    left = [p.name for p in tmp_path.iterdir() if not p.name.endswith(MARKER)]
    assert left == ["vmap.txt"]  # no temporary file left


@pytest.mark.parametrize(
    "text, message",
    [
        ("\t</s>\n\n", ":2: expected one tab"),  # CTranslate2 would empty the always list
        ("\t</s>\na b c\n", ":2: expected one tab"),
        ("\t</s>\na\tb\tc\n", ":2: expected one tab"),
        ("\t</s>\na\tb  c\n", ":2: .*empty"),
        ("\t</s>\na  b\tc\n", ":2: .*empty"),
        ("\t</s>\na\tb\rc\n", ":2: .*whitespace"),
        ("\t</s>\na\tb\na\tc\n", ":3: a second rule for source 'a'"),
        ("\t</s>\n\tx\n", ":2: a second rule for source ''"),
    ],
)
def test_reader_rejects_what_ctranslate2_would_misread(tmp_path, text, message):
    path = tmp_path / "vmap.txt"
    path.write_bytes(text.encode())
    with pytest.raises(VmapError, match=f"vmap.txt{message}"):
        read_vmap(path)


def test_reader_accepts_crlf_a_missing_final_newline_and_no_always_line(tmp_path):
    path = tmp_path / "vmap.txt"
    path.write_bytes(b"a\tb c\r\nd\te")
    assert read_vmap(path) == VocabMap((), {"a": ("b", "c"), "d": ("e",)})
    with pytest.raises(VmapError, match="not found"):
        read_vmap(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    "vmap",
    [
        VocabMap(("a b",), {}),
        VocabMap(("</s>",), {"a": ("b\tc",)}),
        VocabMap(("</s>",), {"a": ("",)}),
        VocabMap(("</s>",), {"": ("b",)}),
        VocabMap(("</s>",), {"a  b": ("c",)}),
        VocabMap(("</s>",), {"a\n": ("c",)}),
    ],
)
def test_writer_refuses_pieces_ctranslate2_would_split(tmp_path, vmap):
    with pytest.raises(VmapError, match="empty or holds whitespace"):
        write_vmap(vmap, tmp_path / "vmap.txt")
    assert not (tmp_path / "vmap.txt").exists()


# --- bad input --------------------------------------------------------------------------------


def test_bad_input_is_an_error():
    src, tgt = animal_corpus()
    with pytest.raises(VmapError, match="target side is longer.*after line 15"):
        build_vmap(src[:-1], tgt)
    with pytest.raises(VmapError, match="source side is longer"):
        build_vmap(src, tgt[:5])
    with pytest.raises(VmapError, match="line 2: target piece 'x y'"):
        build_vmap([["a"], ["b"]], [["c"], ["x y"]])
    with pytest.raises(VmapError, match="line 1: expected a sequence of pieces"):
        build_vmap(["the dog"], ["der hund"])
    with pytest.raises(VmapError, match="no sentence pair"):
        build_vmap([[], ["a"]], [["b"], []])
    with pytest.raises(VmapError, match="unknown method 'ibm2'"):
        build_vmap(src, tgt, method="ibm2")
    with pytest.raises(VmapError, match=">= 0"):
        build_vmap(src, tgt, top_k=-1)


def test_files_are_read_strictly(tmp_path, trained):
    (tmp_path / "a.en").write_text("a dog runs\na cat sleeps\n")
    (tmp_path / "a.de").write_text("ein hund rennt\n")
    with pytest.raises(CorpusError, match="a.en has 2 lines but .*a.de has 1"):
        build_vmap_from_files(tmp_path / "a.en", tmp_path / "a.de", trained.tokenizer)
    (tmp_path / "b.de").write_bytes(b"ein hund rennt\neine \xff katze\n")
    with pytest.raises(CorpusError, match=r"b.de:2: invalid UTF-8"):
        build_vmap_from_files(tmp_path / "a.en", tmp_path / "b.de", trained.tokenizer)


# --- in CTranslate2 ---------------------------------------------------------------------------


def test_map_from_the_training_corpus_keeps_greedy_output(trained, tmp_path):
    """Each training sentence alone (a batch of one, the smallest shortlist) translates as
    without the map, though its shortlist leaves out pieces the model produces for other
    sentences; a map without rules shows the map is in effect."""
    tok = trained.tokenizer
    vmap = build_vmap_from_files(
        trained.corpus / "train.en", trained.corpus / "train.de", tok, top_k=8, frequent=0
    )
    write_vmap(vmap, tmp_path / "vmap.txt")
    export_ct2(trained.state, tmp_path / "ct2", vmap=tmp_path / "vmap.txt")
    assert (tmp_path / "ct2" / "vmap.txt").read_bytes() == (tmp_path / "vmap.txt").read_bytes()
    assert read_export_info(tmp_path / "ct2")["vocabulary_map"]["file"] == "vmap.txt"
    translator = CT2Translator(tmp_path / "ct2", threads=1)
    assert translator.has_vmap
    every_target_piece = {p for t in tok.encode_pieces(TARGETS) for p in t}
    for source, target in TOY_PAIRS:
        assert translator.translate([source], beam_size=1) == [target]
        allowed = vmap.allowed(tok.encode_pieces([source]))
        assert set(tok.encode_pieces([target])[0]) <= allowed
        assert not every_target_piece <= allowed
    assert translator.translate(SOURCES, beam_size=1) == TARGETS
    assert translator.translate(SOURCES, beam_size=4) == TARGETS

    write_vmap(VocabMap(vmap.always, {}), tmp_path / "empty.txt")
    export_ct2(trained.state, tmp_path / "ct2-empty", vmap=tmp_path / "empty.txt")
    bare = CT2Translator(tmp_path / "ct2-empty", threads=1)
    assert bare.translate(SOURCES, beam_size=1, use_vmap=False) == TARGETS
    assert not set(bare.translate(SOURCES, beam_size=1)) & set(TARGETS)


def test_evaluate_uses_the_map_unless_told_not_to(trained, tmp_path, capsys):
    """nmt-evaluate on an export whose map has no rules: garbage with the map, the training
    targets (BLEU 100) with --no-vmap; scores.json says which."""
    tok = trained.tokenizer
    vmap = build_vmap_from_files(
        trained.corpus / "train.en", trained.corpus / "train.de", tok, top_k=8, frequent=0
    )
    write_vmap(VocabMap(vmap.always, {}), tmp_path / "empty.txt")
    export_ct2(trained.state, tmp_path / "ct2", vmap=tmp_path / "empty.txt")
    (tmp_path / "src.en").write_text("".join(s + "\n" for s in SOURCES))
    (tmp_path / "ref.de").write_text("".join(t + "\n" for t in TARGETS))
    common = ["-m", str(tmp_path / "ct2"), "--src", str(tmp_path / "src.en")]
    common += ["--ref", str(tmp_path / "ref.de"), "--beam", "1", "--threads", "1"]
    scores = {}
    for name, flags in (("map", []), ("nomap", ["--no-vmap"])):
        assert evaluate_main([*common, "-o", str(tmp_path / name), *flags]) == 0
        scores[name] = json.loads((tmp_path / name / "scores.json").read_text())
        hyps = (tmp_path / name / "hyp.txt").read_text().splitlines()
        assert len(hyps) == len(SOURCES)
    assert scores["map"]["vocabulary_map"] and not scores["nomap"]["vocabulary_map"]
    assert scores["nomap"]["bleu"] == 100.0 and scores["map"]["bleu"] < 50
    assert (tmp_path / "nomap" / "hyp.txt").read_text().splitlines() == TARGETS


def test_ctranslate2_only_produces_allowed_pieces(trained, tmp_path):
    """A random model (outputs spread over the vocabulary) under a tight map: every output
    piece is one `VocabMap.allowed` lists for its batch, with batches of one and of many."""
    tok = trained.tokenizer
    vmap = build_vmap_from_files(
        trained.corpus / "train.en", trained.corpus / "train.de", tok, top_k=2, frequent=1
    )
    write_vmap(vmap, tmp_path / "vmap.txt")
    state = random_state(tok)
    export_ct2(state, tmp_path / "ct2", vmap=tmp_path / "vmap.txt")
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), intra_threads=1)
    rng = random.Random(0)
    words = sorted({w for s in SOURCES for w in s.split()})
    inputs = [*SOURCES, *(" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(20))]
    batch = tok.encode_pieces(inputs)
    options = dict(beam_size=1, max_decoding_length=12, suppress_sequences=[["<pad>"], ["<s>"]])

    def outputs(pieces, use_vmap):
        results = translator.translate_batch(pieces, use_vmap=use_vmap, **options)
        return [set(r.hypotheses[0]) for r in results]

    for pieces in batch:
        assert outputs([pieces], True)[0] <= vmap.allowed([pieces])
    assert set().union(*outputs(batch, True)) <= vmap.allowed(batch)
    unrestricted = outputs(batch, False)
    assert any(not out <= vmap.allowed([p]) for out, p in zip(unrestricted, batch, strict=True))


def test_tokenizer_from_any_artifact(trained, tmp_path):
    export_ct2(trained.state, tmp_path / "ct2")
    sha = trained.state["tokenizer_sha256"]
    for path in (
        trained.root / "run",
        trained.ckpt,
        trained.root / "run" / "spm.model",
        tmp_path / "ct2",
    ):
        assert tokenizer_from(path).sha256() == sha, path
