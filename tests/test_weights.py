"""Weights folders (safetensors): the same model as the checkpoint, tied weights stored once,
a shared tokenizer found in the parent folder and checked by its sha256."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors import safe_open

from nmt.checkpoint import find_checkpoint, load_checkpoint
from nmt.cli import export_main
from nmt.translate import load
from nmt.weights import WEIGHTS_FILE, WeightsError, read_weights, write_weights

from .toys import plain_inputs, random_state


@pytest.fixture
def checkpoint(tmp_path, toy_tokenizer):
    state = random_state(toy_tokenizer, tie_embeddings=True)
    torch.save(state, tmp_path / "model.pt")
    return tmp_path / "model.pt"


def test_float32_weights_translate_exactly_as_the_checkpoint(checkpoint, tmp_path):
    assert export_main([str(checkpoint), "-o", str(tmp_path / "w"), "--format", "safetensors",
                        "--quantization", "float32"]) == 0  # fmt: skip
    lines = plain_inputs()
    for beam in (1, 4):
        expected = load(checkpoint).translate(lines, beam_size=beam)
        assert load(tmp_path / "w").translate(lines, beam_size=beam) == expected
    assert find_checkpoint(tmp_path / "w") == tmp_path / "w" / WEIGHTS_FILE


def test_float16_weights_hold_the_rounded_model_tied_once(checkpoint, tmp_path):
    state = load_checkpoint(checkpoint)
    path = write_weights(state, tmp_path / "w")
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        assert f.get_tensor("embed.weight").dtype == torch.float16
    assert "output.weight" not in keys  # tied to embed.weight: stored once
    back = read_weights(tmp_path / "w")
    for name, tensor in state["model"].items():
        assert torch.equal(back["model"][name], tensor.half().float()), name
    assert back["model"]["output.weight"] is back["model"]["embed.weight"]
    assert back["model_config"] == state["model_config"]


def test_members_share_the_parent_tokenizer_checked_by_sha256(checkpoint, tmp_path):
    state = load_checkpoint(checkpoint)
    (tmp_path / "ensemble").mkdir()
    (tmp_path / "ensemble" / "spm.model").write_bytes(state["tokenizer_model"])
    write_weights(state, tmp_path / "ensemble" / "s1", tokenizer=False)
    assert read_weights(tmp_path / "ensemble" / "s1")["tokenizer_model"] == state["tokenizer_model"]
    shutil.copyfile(checkpoint, tmp_path / "ensemble" / "spm.model")  # another file
    with pytest.raises(WeightsError, match="does not match the tokenizer sha256"):
        read_weights(tmp_path / "ensemble" / "s1")


def test_a_foreign_or_torn_file_is_refused(checkpoint, tmp_path):
    path = write_weights(load_checkpoint(checkpoint), tmp_path / "w")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        read_weights(path)


def test_weights_untied_by_averaging_are_stored_once(checkpoint, tmp_path):
    state = load_checkpoint(checkpoint)
    state["model"] = {k: v.clone() for k, v in state["model"].items()}  # as averaging left them
    path = write_weights(state, tmp_path / "w")
    with safe_open(str(path), framework="pt") as f:
        assert {"tgt_embed.weight", "output.weight"}.isdisjoint(f.keys())
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_the_committed_member_loads_and_translates():
    """models/multi30k-tiny/s1: float16 weights, the tokenizer in the parent folder."""
    from pathlib import Path

    member = Path(__file__).resolve().parents[1] / "models" / "multi30k-tiny" / "s1"
    state = read_weights(member)
    assert state["model_config"]["d_model"] == 128 and state["weights_dtype"] == "float16"
    (out,) = load(member).translate(["A man rides a bike down the street."], beam_size=1)
    assert "Mann" in out and "Fahrrad" in out
