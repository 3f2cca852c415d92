"""Guards against loops (`Decoding.no_repeat_ngram_size`, `repetition_penalty`,
`max_char_repeat`): validated like every decoding option; off, they change nothing; on,
they hold (no repeated n-gram, no run of a character past the cap); a float32 CTranslate2
export and the PyTorch model still give the same tokens with them (greedy and beam 4, on a
randomly initialised model, which loops readily); the command-line flags reach the
translator; benchmark cells measured before the guards keep their hash. OFF spells the
guards out as off, whatever `Decoding`'s defaults."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch

import nmt.decoding
import nmt.translate
from nmt.backends.base import cap_char_runs
from nmt.bench.grid import Cell
from nmt.cli import translate_main
from nmt.config import ConfigError, ModelConfig
from nmt.data.batching import pad_sources
from nmt.decoding import GUARDS, Decoding
from nmt.distill import load_distill_config
from nmt.model import Transformer
from nmt.search import beam_search, greedy_search
from nmt.vocab import BOS, EOS, PAD

from .toys import many_inputs, plain_inputs, random_state, toy_exports

ROOT = Path(__file__).resolve().parents[1]

OFF = dict(no_repeat_ngram_size=0, repetition_penalty=1.0, max_char_repeat=0)
# Settings that bite on a random model: it repeats tokens and n-grams at once.
GUARDED = [
    dict(no_repeat_ngram_size=1),
    dict(no_repeat_ngram_size=2),
    dict(no_repeat_ngram_size=3),
    dict(repetition_penalty=1.5),
    dict(repetition_penalty=0.7),  # < 1 favours repeats: the sign rule matters both ways
    dict(no_repeat_ngram_size=3, repetition_penalty=1.2),
]


def ngrams(seq: list, n: int) -> list[tuple]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def longest_run(text: str) -> int:
    """The longest run of one character other than a digit."""
    return max((len(m[0]) for m in re.finditer(r"(\D)\1*", text)), default=0)


@pytest.fixture(scope="module")
def toy(toy_tokenizer, tmp_path_factory):
    """A random toy model (PyTorch), its CTranslate2 float32 export as a raw
    `ctranslate2.Translator`, and random source id sequences (without EOS)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from nmt.export.ct2 import export_ct2

    state = random_state(toy_tokenizer, seed=3)
    root = tmp_path_factory.mktemp("robust")
    export_ct2(state, root / "ct2")
    model = Transformer(ModelConfig(**state["model_config"])).eval()
    model.load_state_dict(state["model"])
    g = torch.Generator().manual_seed(2)
    V = toy_tokenizer.vocab_size
    sources = [torch.randint(4, V, (int(n),), generator=g).tolist() for n in range(1, 31)]
    return dict(
        model=model,
        ct2=ctranslate2.Translator(str(root / "ct2"), intra_threads=1, inter_threads=1),
        sources=sources,
        sp=toy_tokenizer.sp,
    )


@pytest.fixture(scope="module")
def models(toy_tokenizer, tmp_path_factory) -> dict[str, Path]:
    """A random toy checkpoint and its CTranslate2 and ONNX exports, by backend."""
    return toy_exports(tmp_path_factory.mktemp("robust-exports"), toy_tokenizer)


LIMIT = 40  # tokens per output: long enough for loops


def torch_ids(toy, beam: int, **guards) -> list[list[int]]:
    """nmt.search's outputs, the guards off unless given."""
    src = pad_sources([s + [EOS] for s in toy["sources"]])
    opts = Decoding(beam_size=beam, max_len_a=0, max_len_b=LIMIT, **(OFF | guards))
    return (greedy_search if beam == 1 else beam_search)(toy["model"], src, opts)


def ct2_ids(toy, beam: int, **guards) -> list[list[int]]:
    """A raw CTranslate2 translator's outputs, with its own defaults unless given."""
    sp = toy["sp"]
    results = toy["ct2"].translate_batch(
        [[sp.id_to_piece(i) for i in s] for s in toy["sources"]],
        beam_size=beam,
        max_decoding_length=LIMIT,
        max_input_length=0,
        suppress_sequences=[["<pad>"], ["<s>"]],
        **guards,
    )
    return [[sp.piece_to_id(p) for p in r.hypotheses[0]] for r in results]


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size: must be >= 0 (0: off)"),
        (dict(no_repeat_ngram_size=2.0), "no_repeat_ngram_size: must be an integer"),
        (dict(no_repeat_ngram_size=True), "no_repeat_ngram_size: must be an integer"),
        (dict(repetition_penalty=0.0), "repetition_penalty: must be positive (1: off)"),
        (dict(repetition_penalty=-1.2), "repetition_penalty: must be positive (1: off)"),
        (dict(repetition_penalty=math.nan), "repetition_penalty: must be a finite number"),
        (dict(repetition_penalty=math.inf), "repetition_penalty: must be a finite number"),
        (dict(max_char_repeat=-1), "max_char_repeat: must be >= 0 (0: off)"),
        (dict(max_char_repeat=3.5), "max_char_repeat: must be an integer"),
    ],
)
def test_guards_refuse_impossible_values(changes, message):
    with pytest.raises(ConfigError) as error:
        Decoding(**changes)
    assert str(error.value).startswith(message)


def test_guard_defaults_and_every_config_checks_them():
    d = Decoding()
    assert (d.no_repeat_ngram_size, d.repetition_penalty, d.max_char_repeat) == (0, 1.0, 4)
    Decoding(**OFF)
    Decoding(no_repeat_ngram_size=1, repetition_penalty=0.5, max_char_repeat=1)
    with pytest.raises(ConfigError, match="^decoding.repetition_penalty: must be positive"):
        load_distill_config(None, ["decoding.repetition_penalty=0"])
    config = load_distill_config(None, ["decoding.no_repeat_ngram_size=3"])
    assert config.decoding.no_repeat_ngram_size == 3


# --- off: nothing changes -----------------------------------------------------------------


@torch.inference_mode()
def plain_greedy(model: Transformer, src: list[int], limit: int) -> list[int]:
    """Greedy search as it was before the guards: argmax of the masked log-probabilities."""
    state = model.init_state(torch.tensor([src]))
    token, out = torch.tensor([BOS]), []
    for step in range(limit + 1):
        logp = model.decode_step(token, state)
        logp[:, [PAD, BOS]] = float("-inf")
        if step == 0:
            logp[:, EOS] = float("-inf")
        if step == limit:
            return out
        token = logp.argmax(-1)
        if int(token) == EOS:
            return out
        out.append(int(token))
    return out


def test_guards_off_change_nothing(toy):
    from .test_export_ct2 import ct2_beam_search

    model = toy["model"]
    greedy = torch_ids(toy, 1)
    assert greedy == [plain_greedy(model, s + [EOS], LIMIT) for s in toy["sources"]]
    beam = torch_ids(toy, 4)
    assert beam == [ct2_beam_search(model, s + [EOS], 4, 1.0, LIMIT) for s in toy["sources"]]
    # Guards that never bind: an n-gram longer than any output, a cap above any run.
    never = dict(no_repeat_ngram_size=LIMIT + 1, max_char_repeat=LIMIT * 20)
    assert torch_ids(toy, 1, **never) == greedy
    assert torch_ids(toy, 4, **never) == beam
    # Off are CTranslate2's own defaults.
    off = dict(no_repeat_ngram_size=0, repetition_penalty=1.0)
    for b in (1, 4):
        assert ct2_ids(toy, b, **off) == ct2_ids(toy, b)


# --- on: the guards hold -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("beam", [1, 4])
def test_no_repeat_ngram_size_never_repeats_an_ngram(toy, n, beam):
    before = torch_ids(toy, beam)
    assert any(len(set(ngrams(h, n))) < len(ngrams(h, n)) for h in before)  # it loops
    for hyps in (
        torch_ids(toy, beam, no_repeat_ngram_size=n),
        ct2_ids(toy, beam, no_repeat_ngram_size=n),
    ):
        for h in hyps:
            assert len(set(ngrams(h, n))) == len(ngrams(h, n)), h


def test_repetition_penalty_repeats_less(toy):
    def repeats(hyps):
        return sum(len(h) - len(set(h)) for h in hyps)

    for beam in (1, 4):
        assert repeats(torch_ids(toy, beam, repetition_penalty=2.0)) < repeats(torch_ids(toy, beam))


def test_cap_char_runs():
    assert cap_char_runs("Aussssssss", 3) == "Ausss"
    assert cap_char_runs("Aussssssss", 0) == "Aussssssss"
    assert cap_char_runs("aaaa bbbbbbb ......", 4) == "aaaa bbbb ...."
    assert cap_char_runs("Schifffahrt", 2) == "Schiffahrt"
    assert cap_char_runs("Straße ßßßß", 1) == "Straße ß"
    assert cap_char_runs("1000000 Euro, 55555", 2) == "1000000 Euro, 55555"  # numbers kept


@pytest.mark.parametrize("backend", ["pytorch", "ctranslate2", "onnx"])
def test_max_char_repeat_holds_in_every_backend(models, backend):
    if backend not in models:
        pytest.skip(f"{backend} is not installed")
    translator = nmt.translate.load(models[backend], threads=1)
    inputs = plain_inputs()
    for beam in (1, 4):
        plain = translator.translate(inputs, Decoding(beam_size=beam, **OFF))
        assert max(map(longest_run, plain)) > 2  # the random model does run on
        capped = translator.translate(
            inputs, Decoding(beam_size=beam, **OFF | {"max_char_repeat": 2})
        )
        assert max(map(longest_run, capped)) == 2
        assert capped == [cap_char_runs(t, 2) for t in plain]


# --- on: PyTorch == CTranslate2 float32 ------------------------------------------------------


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize(
    "guards", GUARDED, ids=lambda g: ",".join(f"{k}={v}" for k, v in g.items())
)
def test_guarded_search_matches_ctranslate2_token_for_token(toy, beam, guards):
    expected = torch_ids(toy, beam, **guards)
    assert ct2_ids(toy, beam, **guards) == expected
    assert expected != torch_ids(toy, beam)  # the guard changed the output


@pytest.mark.parametrize("beam", [1, 4])
def test_guarded_translators_agree(models, beam):
    """Text in, text out, every guard on: CTranslate2 float32 == PyTorch; ONNX Runtime, whose
    graph gives log-probabilities only, == PyTorch without the repetition penalty."""
    pytest.importorskip("ctranslate2")
    from nmt.backends.ct2 import CT2Translator

    inputs = many_inputs()
    torch_translator = nmt.translate.load(models["pytorch"], threads=1)
    ct2 = CT2Translator(models["ctranslate2"], threads=1, exact_length_limits=True)
    guards = Decoding(
        beam_size=beam, no_repeat_ngram_size=3, repetition_penalty=1.3, max_char_repeat=2
    )
    expected = torch_translator.translate(inputs, guards)
    assert ct2.translate(inputs, guards) == expected
    assert expected != torch_translator.translate(inputs, Decoding(beam_size=beam, **OFF))
    if "onnx" in models:
        onnx = nmt.translate.load(models["onnx"], threads=1)
        no_penalty = dataclasses.replace(guards, repetition_penalty=1.0)
        assert onnx.translate(inputs, no_penalty) == torch_translator.translate(inputs, no_penalty)


# --- the command line -----------------------------------------------------------------------


class Recorder:
    """A translator that records the decoding it is asked for."""

    backend = "recorder"
    source = "recorder"

    def __init__(self):
        self.decodings: list[Decoding] = []

    def translate(self, lines, decoding=None, **options):
        self.decodings.append(nmt.decoding.decoding_of(decoding, **options))
        return list(lines)


def test_translate_cli_flags_reach_the_translator(monkeypatch, tmp_path):
    recorder = Recorder()
    monkeypatch.setattr(nmt.translate, "load", lambda *a, **k: recorder)
    src = tmp_path / "src.txt"
    src.write_text("a dog runs\n")
    argv = ["-m", "any", "-i", str(src), "-o", str(tmp_path / "out.txt")]
    assert translate_main(argv) == 0
    assert recorder.decodings[-1] == Decoding()
    flags = ["--no-repeat-ngram-size", "3", "--repetition-penalty", "1.2"]
    assert translate_main([*argv, "--force", *flags, "--max-char-repeat", "4"]) == 0
    assert recorder.decodings[-1] == Decoding(
        no_repeat_ngram_size=3, repetition_penalty=1.2, max_char_repeat=4
    )
    off = ["--no-repeat-ngram-size", "0", "--max-char-repeat", "0"]
    assert translate_main([*argv, "--force", *off]) == 0
    assert recorder.decodings[-1] == Decoding(**OFF)


def test_translate_cli_refuses_a_bad_guard_before_loading(monkeypatch, capsys):
    def never(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(nmt.translate, "load", never)
    assert translate_main(["-m", "any", "--repetition-penalty", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: repetition_penalty: must be positive (1: off), got 0.0"]


def test_distill_cli_flags_reach_the_config(monkeypatch, tmp_path):
    import nmt.distill
    from nmt.cli import distill_main

    from .toys import write_toy_corpus

    seen = []

    def distill(teacher, data, output, config, force=False, merge=False):
        seen.append(config)
        raise nmt.distill.DistillError("stop")

    monkeypatch.setattr(nmt.distill, "distill", distill)
    corpus = write_toy_corpus(tmp_path / "toy")
    argv = ["-t", "any", "--data", str(corpus), "--train", "train", "-o", str(tmp_path / "o")]
    assert distill_main([*argv, "--no-repeat-ngram-size", "4", "--max-char-repeat", "3"]) == 2
    assert seen[-1].decoding.no_repeat_ngram_size == 4
    assert seen[-1].decoding.max_char_repeat == 3
    assert seen[-1].decoding.repetition_penalty == 1.0
    assert distill_main(argv) == 2
    assert seen[-1].decoding == Decoding(max_batch_tokens=seen[-1].decoding.max_batch_tokens)


# --- benchmark cells keep their hash ------------------------------------------------------


def test_cells_measured_before_the_guards_keep_their_hash():
    """Committed results: the hash recorded with each cell is the hash of the cell read back."""
    path = ROOT / "benchmarks/results/quickstart/bench/results.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    cells = [r for r in records if "cell" in r]
    assert cells
    for record in cells:
        assert not set(GUARDS) & set(record["cell"]["decoding"])  # measured before the guards
        assert Cell.from_dict(record["cell"]).spec_hash == record["spec_hash"]


def test_a_guard_is_part_of_a_cells_hash_only_away_from_its_default():
    """A cell of before the guards reads back with the guards' defaults (its hash
    unchanged); a guard set otherwise is a measurement of its own."""
    cell = Cell.from_dict(_first_cell())
    assert cell.decoding == Decoding(beam_size=cell.decoding.beam_size, max_batch_tokens=10**6)
    assert not set(GUARDS) & set(cell.to_dict()["decoding"])
    for changes in (OFF, dict(no_repeat_ngram_size=3), dict(repetition_penalty=1.1)):
        other = dataclasses.replace(cell, decoding=dataclasses.replace(cell.decoding, **changes))
        spec = other.to_dict()["decoding"]
        assert {k: spec[k] for k in GUARDS if k in spec} == {
            k: v for k, v in changes.items() if v != getattr(Decoding(), k)
        }
        assert (other.spec_hash == cell.spec_hash) == (other.decoding == cell.decoding)
        assert Cell.from_dict(other.to_dict()) == other


def _first_cell() -> dict:
    path = ROOT / "benchmarks/results/quickstart/bench/results.jsonl"
    return next(json.loads(x)["cell"] for x in path.read_text().splitlines() if '"cell"' in x)
