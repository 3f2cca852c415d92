"""ONNX export: the exported graphs decode exactly like PyTorch; the export is atomic.

A toy model trained in seconds is compared through both translators on many inputs, greedy
and beam 4; randomly initialised models of all four norm/activation combinations are
compared token for token on random id sequences, up to the full position table.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from nmt.backends.onnx import OnnxTranslator, is_onnx_export, load_onnx  # noqa: E402
from nmt.checkpoint import find_checkpoint, load_checkpoint  # noqa: E402
from nmt.config import ModelConfig  # noqa: E402
from nmt.data.batching import pad_sources  # noqa: E402
from nmt.decoding import Decoding  # noqa: E402
from nmt.export.onnx import (  # noqa: E402
    DECODER_FILE,
    ENCODER_FILE,
    TOKENIZER_FILE,
    ExportError,
    decoder_io,
    encoder_io,
    export_onnx,
    read_export_info,
)
from nmt.fileio import file_sha256  # noqa: E402
from nmt.model import Transformer  # noqa: E402
from nmt.outputs import MARKER  # noqa: E402
from nmt.search import search  # noqa: E402
from nmt.training.run import train  # noqa: E402
from nmt.translate import load  # noqa: E402
from nmt.vocab import EOS  # noqa: E402

from .test_train import toy_config  # noqa: E402
from .toys import (  # noqa: E402
    SOURCES,
    TARGETS,
    fraction_equal,
    many_inputs,
    random_state,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A toy model trained to reproduce TOY_PAIRS, its PyTorch translator and exports."""
    root = tmp_path_factory.mktemp("onnx")
    corpus = root / "toy"
    corpus.mkdir()
    for split, reps in (("train", 8), ("val", 1)):
        (corpus / f"{split}.en").write_text("".join(f"{s}\n" for s in SOURCES) * reps)
        (corpus / f"{split}.de").write_text("".join(f"{t}\n" for t in TARGETS) * reps)
    train(toy_config(root / "run", corpus, "train.max_steps=250", "train.save_every=1000"))
    ckpt = find_checkpoint(root / "run")
    state = load_checkpoint(ckpt)
    export_onnx(state, root / "fp32", checkpoint_path=ckpt)
    export_onnx(ckpt, root / "int8", quantization="int8")  # a path works as well as a state
    return SimpleNamespace(
        root=root,
        ckpt=ckpt,
        state=state,
        torch=load(ckpt),
        fp32=OnnxTranslator(root / "fp32", threads=1),
        int8=OnnxTranslator(root / "int8", threads=1),
    )


# --- equivalence -----------------------------------------------------------------------


def test_greedy_matches_pytorch_on_many_inputs(trained):
    inputs = many_inputs()
    assert trained.fp32.translate(inputs, beam_size=1) == trained.torch.translate(
        inputs, beam_size=1
    )
    assert trained.fp32.translate(SOURCES, beam_size=1) == TARGETS


def test_greedy_matches_pytorch_when_length_limits_bind(trained):
    """Short limits that differ per sentence, and a minimum length."""
    inputs = many_inputs()
    for opts in (dict(max_len_a=0.5, max_len_b=1), dict(max_len_a=0.0, max_len_b=3, min_len=3)):
        assert trained.fp32.translate(inputs, beam_size=1, **opts) == trained.torch.translate(
            inputs, beam_size=1, **opts
        )


@pytest.mark.parametrize("length_penalty", [1.0, 0.0])
def test_beam_matches_pytorch_on_many_inputs(trained, length_penalty):
    inputs = many_inputs()
    for limits in (dict(), dict(max_len_a=0.5, max_len_b=2)):
        options = dict(beam_size=4, length_penalty=length_penalty, **limits)
        assert trained.fp32.translate(inputs, **options) == trained.torch.translate(
            inputs, **options
        )


@pytest.mark.parametrize("pre_norm", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_random_model_matches_token_for_token(tmp_path, toy_tokenizer, pre_norm, activation):
    state = random_state(toy_tokenizer, pre_norm=pre_norm, activation=activation)
    export_onnx(state, tmp_path / "onnx")
    translator = OnnxTranslator(tmp_path / "onnx", threads=1)
    model = Transformer(ModelConfig(**state["model_config"])).eval()
    model.load_state_dict(state["model"])
    g = torch.Generator().manual_seed(1)
    V = toy_tokenizer.vocab_size
    sources = [torch.randint(4, V, (n,), generator=g).tolist() + [EOS] for n in range(1, 41)]
    sources.append(torch.randint(4, V, (62,), generator=g).tolist() + [EOS])  # 63 with EOS
    src = pad_sources(sources)
    # The longest source and the longest output use every row of the position table.
    for opts in (
        Decoding(beam_size=1, max_len_a=0, max_len_b=63),
        Decoding(beam_size=4, max_len_a=0, max_len_b=63),
        Decoding(beam_size=3, length_penalty=0.0, max_len_a=0.5, max_len_b=2, min_len=2),
    ):
        expected = search(model, src, opts)
        assert search(translator.model, src, opts) == expected, opts  # the graphs, decoded
    assert len({tuple(h) for h in expected}) > 5  # the outputs depend on the input


def test_int8_keeps_most_sentences_identical(trained):
    inputs = many_inputs()
    for beam in (1, 4):
        fp32 = trained.fp32.translate(inputs, beam_size=beam)
        assert fraction_equal(trained.int8.translate(inputs, beam_size=beam), fp32) >= 0.9


# --- the translator API -----------------------------------------------------------------


def test_translator_keeps_lines_aligned(trained):
    lines = ["a dog runs", "", "   ", "a cat sleeps"]
    for beam in (1, 2):
        assert trained.fp32.translate(lines, beam_size=beam) == [TARGETS[0], "", "", TARGETS[1]]
    assert trained.fp32.translate([]) == []
    assert trained.fp32.translate(["", " "]) == ["", ""]
    t = trained.fp32
    assert (t.backend, t.source, t.device, t.threads) == (
        "onnx",
        str(trained.root / "fp32"),
        "cpu",
        1,
    )
    assert t.tokenizer.sha256() == trained.state["tokenizer_sha256"]


def test_loader_and_recogniser(trained):
    assert is_onnx_export(trained.root / "fp32")
    assert is_onnx_export(trained.root / "int8")
    assert not is_onnx_export(trained.root / "run")
    assert not is_onnx_export(trained.ckpt)
    translator = load_onnx(trained.root / "int8", threads=1, beam_size=3)  # extras ignored
    assert translator.translate(SOURCES[:2], beam_size=1) == TARGETS[:2]
    with pytest.raises(ValueError, match="not available"):
        load_onnx(trained.root / "fp32", device="tpu")


# --- the exported folder ----------------------------------------------------------------


def test_export_describes_itself(trained):
    folder = trained.root / "fp32"
    info = read_export_info(folder)
    assert info["format"] == "nmt-onnx" and info["format_version"] == 1
    assert info["source_checkpoint"] == str(trained.ckpt)
    assert info["source_checkpoint_sha256"] == file_sha256(trained.ckpt)
    assert info["quantization"] == "float32"
    assert info["model_config"] == trained.state["model_config"]
    assert info["onnxruntime_version"] == ort.__version__
    assert info["torch_version"] == torch.__version__
    assert "dynamo=False" in info["exporter"]
    assert info["tokenizer"]["sha256"] == trained.state["tokenizer_sha256"]
    assert (folder / TOKENIZER_FILE).read_bytes() == trained.state["tokenizer_model"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [ENCODER_FILE, DECODER_FILE, TOKENIZER_FILE, "nmt_export.json", MARKER]
    )
    int8 = read_export_info(trained.root / "int8")
    assert int8["quantization"] == "int8"
    assert int8["source_checkpoint"] == str(trained.ckpt)
    assert (trained.root / "int8" / DECODER_FILE).stat().st_size < (
        folder / DECODER_FILE
    ).stat().st_size


def test_graphs_have_the_documented_inputs_and_dynamic_axes(trained):
    L = trained.state["model_config"]["dec_layers"]
    info = read_export_info(trained.root / "fp32")["graphs"]
    for name, (inputs, outputs), session in (
        ("encoder", encoder_io(L), trained.fp32.model.encoder),
        ("decoder", decoder_io(L), trained.fp32.model.decoder),
    ):
        assert [i.name for i in session.get_inputs()] == inputs == info[name]["inputs"]
        assert [o.name for o in session.get_outputs()] == outputs == info[name]["outputs"]
        assert info[name]["sha256"] == file_sha256(trained.root / "fp32" / info[name]["file"])
    shapes = {i.name: i.shape for i in trained.fp32.model.decoder.get_inputs()}
    assert isinstance(shapes["tokens"][0], str) and shapes["step"] == []
    assert all(isinstance(d, str) for d in shapes["src_mask"])
    assert all(isinstance(shapes["past_k_0"][a], str) for a in (0, 2))
    assert all(isinstance(shapes["memory_v_0"][a], str) for a in (0, 2))
    src_shape = trained.fp32.model.encoder.get_inputs()[0].shape
    assert all(isinstance(d, str) for d in src_shape)


def test_export_refuses_to_overwrite_without_force(trained, tmp_path):
    folder = tmp_path / "onnx"
    shutil.copytree(trained.root / "fp32", folder)
    with pytest.raises(FileExistsError, match="force"):
        export_onnx(trained.state, folder, quantization="int8")
    assert read_export_info(folder)["quantization"] == "float32"
    export_onnx(trained.state, folder, quantization="int8", force=True)
    assert read_export_info(folder)["quantization"] == "int8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]


def _fail_in_quantization(model_input, model_output, **_):
    Path(model_output).write_bytes(b"partial")
    raise OSError("disk full")


def _fail_in_provenance(path, data):
    raise OSError("disk full")


@pytest.mark.parametrize(
    "target, replacement, quantization",
    [
        ("nmt.export.onnx.quantize_dynamic", _fail_in_quantization, "int8"),
        ("nmt.export.onnx._write_json", _fail_in_provenance, "float32"),
    ],
)
def test_interrupted_export_leaves_nothing_that_loads(
    trained, tmp_path, monkeypatch, target, replacement, quantization
):
    old = tmp_path / "old"
    shutil.copytree(trained.root / "fp32", old)
    monkeypatch.setattr(target, replacement)
    with pytest.raises(OSError, match="disk full"):
        export_onnx(trained.state, tmp_path / "new", quantization=quantization)
    with pytest.raises(OSError, match="disk full"):
        export_onnx(trained.state, old, quantization=quantization, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # no temporary folders left
    assert read_export_info(old)["quantization"] == "float32"
    assert OnnxTranslator(old, threads=1).translate(SOURCES[:2], beam_size=1) == TARGETS[:2]


def test_export_rejects_bad_requests(trained, tmp_path):
    with pytest.raises(ValueError, match="quantization"):
        export_onnx(trained.state, tmp_path / "a", quantization="int16")
    wrong = dict(trained.state, tokenizer_sha256="0" * 64)
    with pytest.raises(ExportError, match="sha256"):
        export_onnx(wrong, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExportError, match="not an nmt"):
        read_export_info(trained.root / "run")
