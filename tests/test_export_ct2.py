"""CTranslate2 export: the exported model decodes like PyTorch; the export is atomic.

Trained toy models (pre-norm/relu and post-norm/gelu with another LayerNorm epsilon) are
compared through both translators on many inputs; randomly initialised models of all four
norm/activation combinations are compared token for token on random id sequences, up to
the full position table.

Beam search: `ct2_beam_search` below is a one-sentence PyTorch beam search written
straight from CTranslate2's rules (decoding.cc); CTranslate2 matches it exactly, and
`nmt.search.beam_search` (batched) matches CTranslate2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ctranslate2 = pytest.importorskip("ctranslate2")

from nmt.backends.ct2 import CT2Translator, is_ct2_export, load_ct2  # noqa: E402
from nmt.checkpoint import find_checkpoint, load_checkpoint  # noqa: E402
from nmt.config import ModelConfig  # noqa: E402
from nmt.data.batching import pad_sources  # noqa: E402
from nmt.decoding import Decoding  # noqa: E402
from nmt.export import ct2 as export_module  # noqa: E402
from nmt.export.ct2 import (  # noqa: E402
    TOKENIZER_FILE,
    build_spec,
    export_ct2,
    read_export_info,
)
from nmt.model import Transformer  # noqa: E402
from nmt.search import greedy_search  # noqa: E402
from nmt.training.run import train  # noqa: E402
from nmt.translate import load  # noqa: E402
from nmt.vocab import BOS, EOS, PAD  # noqa: E402

from .test_train import toy_config  # noqa: E402
from .toys import (  # noqa: E402
    SOURCES,
    TARGETS,
    fraction_equal,
    many_inputs,
    plain_inputs,
    random_state,
    write_toy_corpus,
)

VARIANTS = {
    "prenorm-relu": [],
    "postnorm-gelu": ["model.pre_norm=false", "model.activation=gelu", "model.layer_norm_eps=1e-5"],
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def trained(request, tmp_path_factory):
    """A toy model trained to reproduce TOY_PAIRS, its PyTorch translator and exports."""
    root = tmp_path_factory.mktemp(request.param)
    corpus = write_toy_corpus(root / "toy")
    extra = ["train.max_steps=250", "train.save_every=1000", *VARIANTS[request.param]]
    train(toy_config(root / "run", corpus, *extra))
    ckpt = find_checkpoint(root / "run")
    state = load_checkpoint(ckpt)
    export_ct2(state, root / "fp32", checkpoint_path=ckpt)
    export_ct2(state, root / "int8", quantization="int8", checkpoint_path=ckpt)
    return SimpleNamespace(
        root=root,
        ckpt=ckpt,
        state=state,
        torch=load(ckpt),
        fp32=CT2Translator(root / "fp32", threads=1, exact_length_limits=True),
        int8=CT2Translator(root / "int8", threads=1, exact_length_limits=True),
    )


def ct2_translate_ids(translator, tokenizer, sources, **options) -> list[list[int]]:
    """Decode id sequences (without EOS) with a raw `ctranslate2.Translator`."""
    sp = tokenizer.sp
    results = translator.translate_batch(
        [[sp.id_to_piece(i) for i in src] for src in sources],
        max_input_length=0,
        suppress_sequences=[["<pad>"], ["<s>"]],
        **options,
    )
    return [[sp.piece_to_id(p) for p in r.hypotheses[0]] for r in results]


@torch.inference_mode()
def ct2_beam_search(
    model: Transformer,
    src: list[int],
    beam_size: int,
    length_penalty: float,
    limit: int,
    min_len: int = 1,
) -> list[int]:
    """Beam search over one source (ids with EOS) with CTranslate2's rules (decoding.cc,
    `BeamSearch::search`); where they differ from `nmt.search.beam_search`:

    1. Masked tokens (PAD, BOS, EOS before `min_len`) are removed *before* the softmax, so
       the remaining log-probabilities are renormalised (nmt masks after log_softmax).
    2. At the last step (`limit - 1`) every one of the K best candidates becomes a finished
       hypothesis, EOS or not, with its own token's score; nmt forces a free EOS one step
       later and keeps only the K best non-EOS continuations.
    3. Length normalisation divides by the length counting EOS only when the hypothesis
       ended with EOS (nmt always adds 1, also for hypotheses cut at the limit).
    4. Every EOS among the K best candidates of a step is kept; nmt stops at K.
    5. With length_penalty 0, a sentence ends only once the best candidate of some step
       was EOS (nmt ends it after K finished hypotheses, possibly before the best beam
       finishes).
    The continuing beams are the K best non-EOS candidates of the 2K best, as in nmt.
    """
    K = beam_size
    state = model.init_state(torch.tensor([src]))
    state.select(torch.zeros(K, dtype=torch.long))
    scores = torch.full((K,), float("-inf"))
    scores[0] = 0.0
    tokens = torch.full((K,), BOS)
    history: list[list[int]] = [[] for _ in range(K)]
    finished: list[tuple[float, list[int], bool]] = []  # (score, tokens, ended with EOS)
    best_finished = False
    for step in range(limit):
        logp = model.decode_step(tokens, state)
        logp[:, [PAD, BOS]] = float("-inf")
        if step < min_len:
            logp[:, EOS] = float("-inf")
        logp = logp.log_softmax(-1)  # 1. renormalise
        V = logp.size(1)
        top_scores, top_idx = (scores[:, None] + logp).view(-1).topk(2 * K)
        beam, tok = (top_idx // V).tolist(), (top_idx % V).tolist()
        last = step == limit - 1
        keep, spare = [], K
        for k in range(K):
            pick = k
            if tok[k] == EOS or last:  # 2. and 4.
                best_finished |= k == 0
                ended = tok[k] == EOS
                finished.append(
                    (float(top_scores[k]), history[beam[k]] + [tok[k]] * (not ended), ended)
                )
                for j in range(spare, 2 * K):  # replace it by the next non-EOS candidate
                    if tok[j] != EOS:
                        pick, spare = j, j + 1
                        break
            keep.append(pick)
        if last or (best_finished if length_penalty == 0 else len(finished) >= K):  # 5.
            break
        history = [history[beam[j]] + [tok[j]] for j in keep]
        scores = top_scores[keep]
        tokens = torch.tensor([tok[j] for j in keep])
        state.select(torch.tensor([beam[j] for j in keep]))
    best = max(finished, key=lambda h: h[0] / (len(h[1]) + h[2]) ** length_penalty)  # 3.
    return best[1]


# --- equivalence -----------------------------------------------------------------------


def test_greedy_matches_pytorch_on_many_inputs(trained):
    inputs = many_inputs()
    expected = trained.torch.translate(inputs, beam_size=1)
    assert trained.fp32.translate(inputs, beam_size=1) == expected
    assert trained.fp32.translate(SOURCES, beam_size=1) == TARGETS


def test_greedy_matches_pytorch_when_length_limits_bind(trained):
    """Short limits that differ per sentence, and a minimum length."""
    inputs = many_inputs()
    for opts in (dict(max_len_a=0.5, max_len_b=1), dict(max_len_a=0.0, max_len_b=3, min_len=3)):
        assert trained.fp32.translate(inputs, beam_size=1, **opts) == trained.torch.translate(
            inputs, beam_size=1, **opts
        )


@pytest.mark.parametrize("pre_norm", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_random_model_greedy_matches_token_for_token(tmp_path, toy_tokenizer, pre_norm, activation):
    state = random_state(toy_tokenizer, pre_norm=pre_norm, activation=activation)
    export_ct2(state, tmp_path / "ct2")
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), intra_threads=1, inter_threads=1)
    model = Transformer(ModelConfig(**state["model_config"])).eval()
    model.load_state_dict(state["model"])
    g = torch.Generator().manual_seed(1)
    V = toy_tokenizer.vocab_size
    sources = [torch.randint(4, V, (int(n),), generator=g).tolist() for n in range(1, 41)]
    sources.append(torch.randint(4, V, (62,), generator=g).tolist())  # 63 with EOS
    # The longest source and the longest output use every row of the position table.
    expected = greedy_search(
        model,
        pad_sources([s + [EOS] for s in sources]),
        Decoding(beam_size=1, max_len_a=0, max_len_b=63),
    )
    got = ct2_translate_ids(translator, toy_tokenizer, sources, beam_size=1, max_decoding_length=63)
    assert got == expected
    assert len({tuple(h) for h in expected}) > 5  # the outputs depend on the input


@pytest.mark.parametrize("max_len_a, max_len_b", [(1.5, 10), (0.5, 2)])
@pytest.mark.parametrize("length_penalty", [1.0, 0.0])
def test_beam_follows_ctranslate2_rules_exactly(trained, length_penalty, max_len_a, max_len_b):
    """CTranslate2's beam 4 equals `ct2_beam_search` on every input, also where the
    per-sentence length limits (emulated by grouping) bind."""
    translator, tok = trained.fp32, trained.torch.tokenizer
    inputs = plain_inputs()
    got = translator.translate(
        inputs,
        beam_size=4,
        length_penalty=length_penalty,
        max_len_a=max_len_a,
        max_len_b=max_len_b,
    )
    expected = []
    for line in inputs:
        src = tok.encode([line])[0] + [EOS]
        limit = translator.length_limits([len(src)], max_len_a, max_len_b)[0]
        hyp = ct2_beam_search(trained.torch.model, src, 4, length_penalty, limit)
        expected.append(tok.decode([hyp])[0])
    assert got == expected


def test_beam_matches_pytorch_on_training_pairs(trained):
    expected = trained.torch.translate(SOURCES, beam_size=4)
    assert trained.fp32.translate(SOURCES, beam_size=4) == expected


def test_beam_matches_pytorch_on_many_inputs(trained):
    inputs = many_inputs()
    for length_penalty in (1.0, 0.0):
        options = dict(beam_size=4, length_penalty=length_penalty)
        assert trained.fp32.translate(inputs, **options) == trained.torch.translate(
            inputs, **options
        )


def test_default_length_limits_agree_unless_a_limit_binds(trained):
    """The default (one call at the batch's largest limit) equals the exact grouping when no
    sentence's own limit binds, and never exceeds a sentence's limit when one does."""
    fast = CT2Translator(trained.root / "fp32", threads=1)
    inputs = many_inputs()
    assert fast.translate(inputs, beam_size=4) == trained.fp32.translate(inputs, beam_size=4)
    tok = trained.torch.tokenizer
    outputs = fast.translate(inputs, beam_size=4, max_len_a=0.3, max_len_b=1)
    for line, out in zip(inputs, outputs, strict=True):
        limit = fast.length_limits([len(tok.encode([line])[0]) + 1], 0.3, 1)[0]
        assert len(out.split()) <= limit  # words <= pieces <= limit


def test_int8_keeps_most_sentences_identical(trained):
    """The toy has 250 updates and small logit margins, so int8 flips a few outputs: 0.89 to
    1.0 of them stay identical depending on float rounding in its training (the fused loss
    moved the post-norm toy from one side of 0.9 to the other); a broken quantization keeps
    far fewer."""
    inputs = many_inputs()
    for beam in (1, 4):
        fp32 = trained.fp32.translate(inputs, beam_size=beam)
        assert fraction_equal(trained.int8.translate(inputs, beam_size=beam), fp32) >= 0.85


def test_vmap_allowing_every_needed_piece_keeps_greedy_output(trained, tmp_path):
    """A vmap restricts the softmax to the allowed pieces: greedy output stays the same
    when every piece it picks is allowed (beam scores, renormalised, may change)."""
    tok = trained.torch.tokenizer
    pieces = sorted({p for seq in tok.encode_pieces(TARGETS) for p in seq} | {"</s>"})
    vmap = tmp_path / "vmap.txt"
    vmap.write_text("\t" + " ".join(pieces) + "\n", encoding="utf-8")
    export_ct2(trained.state, tmp_path / "ct2", vmap=vmap)
    translator = CT2Translator(tmp_path / "ct2", threads=1)
    assert translator.has_vmap
    assert translator.translate(SOURCES, beam_size=1) == TARGETS
    assert translator.translate(SOURCES, beam_size=1, use_vmap=False) == TARGETS
    assert read_export_info(tmp_path / "ct2")["vocabulary_map"]["file"] == "vmap.txt"


# --- the translator API -----------------------------------------------------------------


def test_translator_keeps_lines_aligned(trained):
    lines = ["a dog runs", "", "   ", "a cat sleeps"]
    assert trained.fp32.translate(lines, beam_size=2) == ["ein hund rennt", "", "", TARGETS[1]]
    assert trained.fp32.translate([]) == []
    assert trained.fp32.backend == "ctranslate2"


def test_parallel_translators_split_each_call_and_agree(trained):
    two = CT2Translator(trained.root / "fp32", threads=1, inter_threads=2)
    assert two.translator.num_translators == 2
    calls = []

    class Spy:  # records the batch size each call asks CTranslate2 for
        num_translators = 2

        def translate_batch(self, batch, **options):
            calls.append((sum(len(p) + 1 for p in batch), options["max_batch_size"]))
            return two_translator.translate_batch(batch, **options)

    two_translator, two.translator = two.translator, Spy()
    inputs = many_inputs()
    assert two.translate(inputs, beam_size=1) == trained.fp32.translate(inputs, beam_size=1)
    assert two.translate(inputs, beam_size=4) == load_ct2(trained.root / "fp32").translate(
        inputs, beam_size=4
    )
    assert all(tokens > limit >= tokens / 2 for tokens, limit in calls)


def test_loader_and_recogniser(trained):
    assert is_ct2_export(trained.root / "fp32")
    assert not is_ct2_export(trained.root / "run")
    assert not is_ct2_export(trained.ckpt)
    translator = load_ct2(trained.root / "int8", threads=1, beam_size=3)  # extra options ignored
    assert translator.translate(SOURCES[:2], beam_size=1) == TARGETS[:2]


def test_load_recognises_exports_and_the_cli_exports(trained, tmp_path, capsys):
    from nmt.cli import export_main

    assert load(trained.root / "fp32").backend == "ctranslate2"
    assert load(trained.root / "run").backend == "pytorch"
    out = tmp_path / "cli-int8"
    assert export_main([str(trained.root / "run"), "-o", str(out), "--int8"]) == 0
    assert read_export_info(out)["quantization"] == "int8"
    assert load(out, threads=1).translate(SOURCES[:2], beam_size=1) == TARGETS[:2]
    assert export_main([str(trained.root / "run"), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert export_main([str(trained.root / "run"), "-o", str(out), "--force"]) == 0
    assert read_export_info(out)["quantization"] == "float32"


# --- the exported folder ----------------------------------------------------------------


def test_export_describes_itself(trained):
    folder = trained.root / "fp32"
    info = read_export_info(folder)
    assert info["source_checkpoint"] == str(trained.ckpt)
    assert info["quantization"] == "float32"
    assert info["model_config"] == trained.state["model_config"]
    assert info["ctranslate2_version"] == ctranslate2.__version__
    assert info["tokenizer"]["sha256"] == trained.state["tokenizer_sha256"]
    assert (folder / TOKENIZER_FILE).read_bytes() == trained.state["tokenizer_model"]
    ct2_config = json.loads((folder / "config.json").read_text())
    assert ct2_config["add_source_eos"] is True and ct2_config["add_source_bos"] is False
    assert ct2_config["decoder_start_token"] == "<s>"
    assert ct2_config["layer_norm_epsilon"] == pytest.approx(
        trained.state["model_config"]["layer_norm_eps"]
    )
    assert read_export_info(trained.root / "int8")["quantization"] == "int8"


def test_quantizing_the_spec_leaves_the_model_untouched(toy_tokenizer):
    state = random_state(toy_tokenizer)
    model = Transformer(ModelConfig(**state["model_config"])).eval()
    model.load_state_dict(state["model"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = build_spec(model, toy_tokenizer)
    spec.validate()
    spec.optimize(quantization="int8")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_export_refuses_to_overwrite_without_force(tmp_path, toy_tokenizer):
    state = random_state(toy_tokenizer)
    export_ct2(state, tmp_path / "ct2")
    with pytest.raises(FileExistsError, match="force"):
        export_ct2(state, tmp_path / "ct2", quantization="int8")
    assert read_export_info(tmp_path / "ct2")["quantization"] == "float32"
    export_ct2(state, tmp_path / "ct2", quantization="int8", force=True)
    assert read_export_info(tmp_path / "ct2")["quantization"] == "int8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct2"]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_next_export_cleans_up_after_a_killed_one(tmp_path, toy_tokenizer):
    """SIGKILL leaves the work folder (`.NAME.PID.XXXX.tmp`); a killed --force export may
    have moved the previous export into it. The next export puts that back and clears
    the folders of dead processes, not those of a live one."""
    state = random_state(toy_tokenizer)
    export_ct2(state, tmp_path / "ct2")
    killed = tmp_path / f".ct2.{dead_pid()}.abc123.tmp"
    killed.mkdir()
    (tmp_path / "ct2").rename(killed / "previous")  # the kill came before the new one's rename
    (killed / "export").mkdir()  # a half-written new export
    live = tmp_path / f".ct2.{os.getpid()}.def456.tmp"
    live.mkdir()
    other = tmp_path / f".ct2.1234.{dead_pid()}.ghi789.tmp"  # work folder of export "ct2.1234"
    other.mkdir()
    with pytest.raises(FileExistsError, match="force"):
        export_ct2(state, tmp_path / "ct2", quantization="int8")
    assert read_export_info(tmp_path / "ct2")["quantization"] == "float32"  # put back
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ct2", live.name, other.name])


def _fail_in_ct2_save(self, output_dir):
    (Path(output_dir) / "model.bin").write_bytes(b"partial")
    raise OSError("disk full")


def _fail_in_provenance(path, data):
    raise OSError("disk full")


@pytest.mark.parametrize(
    "target, replacement",
    [
        ("ctranslate2.specs.TransformerSpec.save", _fail_in_ct2_save),
        ("nmt.export.ct2._write_json", _fail_in_provenance),
    ],
)
def test_interrupted_export_leaves_nothing_that_loads(
    tmp_path, toy_tokenizer, monkeypatch, target, replacement
):
    state = random_state(toy_tokenizer)
    export_ct2(state, tmp_path / "old")
    monkeypatch.setattr(target, replacement)
    with pytest.raises(OSError, match="disk full"):
        export_ct2(state, tmp_path / "new")
    with pytest.raises(OSError, match="disk full"):
        export_ct2(state, tmp_path / "old", quantization="int8", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # no temporary folders left
    assert read_export_info(tmp_path / "old")["quantization"] == "float32"
    ctranslate2.Translator(str(tmp_path / "old"), intra_threads=1)  # the old export still loads


def test_export_rejects_bad_requests(tmp_path, toy_tokenizer):
    state = random_state(toy_tokenizer)
    with pytest.raises(ValueError, match="quantization"):
        export_ct2(state, tmp_path / "a", quantization="int4")
    with pytest.raises(FileNotFoundError, match="vocabulary mapping"):
        export_ct2(state, tmp_path / "b", vmap=tmp_path / "missing.txt")
    wrong = dict(state, tokenizer_sha256="0" * 64)
    with pytest.raises(export_module.ExportError, match="sha256"):
        export_ct2(wrong, tmp_path / "c")
    assert list(tmp_path.iterdir()) == []
