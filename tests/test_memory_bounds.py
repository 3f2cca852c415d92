"""A small input cannot demand a large memory: a zip-bomb checkpoint is refused from its
directory before anything is inflated; a model config cannot ask a small weights file for a
huge positional table or for layers the file does not hold; the out-of-memory line counts
what building the model allocates; and `translate_stream` refuses an over-long line."""

from __future__ import annotations

import json
import re
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from nmt.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from nmt.cli import translate_main
from nmt.config import ConfigError, ModelConfig
from nmt.model import MAX_POSITIONS, Transformer
from nmt.translate import MAX_LINE_CHARS, LineTooLongError, translate_stream
from nmt.weights import write_weights

from .conftest import tiny_config
from .toys import random_state


@pytest.fixture
def checkpoint(tmp_path, toy_tokenizer):
    torch.save(random_state(toy_tokenizer), tmp_path / "model.pt")
    return tmp_path / "model.pt"


def zip_bomb(real: Path, bomb: Path, gib: int = 1) -> Path:
    """`real` with its first tensor record replaced by `gib` GiB of zeros, DEFLATE
    compressed (~4.6 MB per GiB), written 1 MiB at a time."""
    zeros = bytes(2**20)
    deflate = {"compression": zipfile.ZIP_DEFLATED, "compresslevel": 1}
    with zipfile.ZipFile(real) as source, zipfile.ZipFile(bomb, "w", **deflate) as out:
        victim = next(n for n in source.namelist() if "/data/" in n)
        for name in source.namelist():
            if name != victim:  # as it was: stored
                out.writestr(source.getinfo(name), source.read(name))
                continue
            with out.open(name, "w", force_zip64=True) as record:
                for _ in range(gib * 1024):
                    record.write(zeros)
    return bomb


def test_a_zip_bomb_is_refused_unread(checkpoint, tmp_path, monkeypatch, capsys):
    bomb = zip_bomb(checkpoint, tmp_path / "bomb.pt")
    assert bomb.stat().st_size < 8 * 2**20
    loads = []

    def no_load(*args, **kwargs):
        loads.append(args)
        raise AssertionError("torch.load reached")

    monkeypatch.setattr(torch, "load", no_load)
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(bomb)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    message = str(refused.value)
    assert message.startswith(f"{bomb}: record model/data/0 is compressed"), message
    assert "1,073,741,824" in message and "zip bomb" in message and "\n" not in message
    assert not loads
    assert seconds < 1.0 and peak < 16 * 2**20, (seconds, peak)
    src = tmp_path / "src.txt"
    src.write_text("a dog runs\n")
    assert translate_main(["-m", str(bomb), "-i", str(src)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bomb}: record") and "zip bomb" in err[0]


def rewrite_config(path: Path, **changes) -> Path:
    """The weights file or checkpoint at `path`, its model_config changed: nothing else."""
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        config = json.loads(metadata["model_config"])
        metadata["model_config"] = json.dumps({**config, **changes}, sort_keys=True)
        save_file(load_file(str(path)), str(path), metadata=metadata)
    else:
        state = torch.load(path, weights_only=True)
        state["model_config"] = {**state["model_config"], **changes}
        torch.save(state, path)
    return path


@pytest.mark.parametrize("kind", ["safetensors", "pt"])
def test_a_huge_max_positions_is_refused_naming_the_key(kind, checkpoint, tmp_path):
    """No tensor stores the positional table (it is computed when the model is built), so
    only the cap bounds it: 10**8 positions of a d_model 32 file would take 12 GiB."""
    path = checkpoint
    if kind == "safetensors":
        path = write_weights(load_checkpoint(checkpoint), tmp_path / "w", dtype="float16")
    rewrite_config(path, max_positions=10**8)
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    assert time.perf_counter() - started < 1.0
    message = str(refused.value)
    assert message.startswith(f"{path}: model_config: model.max_positions: must be at most")
    assert f"{MAX_POSITIONS:,}" in message and "\n" not in message
    rewrite_config(path, max_positions=MAX_POSITIONS)  # at the cap: loads
    assert load_checkpoint(path)["model_config"]["max_positions"] == MAX_POSITIONS


def test_layer_counts_the_tensors_do_not_hold_are_refused_before_building(checkpoint):
    """A 2-layer file whose config asks for 200 encoder layers: refused from the tensor
    names, before any module is built (even on the meta device, layers cost memory)."""
    rewrite_config(checkpoint, enc_layers=200)
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"model_config.enc_layers is 200 .* hold 2 "):
        load_checkpoint(checkpoint)
    assert time.perf_counter() - started < 0.5


def test_weights_metadata_spells_out_every_shape_setting(checkpoint, tmp_path):
    """A config that relied on defaults (an older checkpoint's) is written out in full, so
    the file keeps meaning the same model whatever the defaults become."""
    state = load_checkpoint(checkpoint)
    defaults = ("activation", "pre_norm", "layer_norm_eps")
    state["model_config"] = {k: v for k, v in state["model_config"].items() if k not in defaults}
    with safe_open(str(write_weights(state, tmp_path / "w")), framework="pt") as f:
        written = json.loads(f.metadata()["model_config"])
    assert set(written) == set(ModelConfig.__dataclass_fields__)
    assert written["activation"] == "relu" and written["max_positions"] == 64


def test_build_bytes_is_what_building_allocates():
    for config in (tiny_config(), tiny_config(tie_embeddings=False, max_positions=4096)):
        model = Transformer(config)
        real = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
        assert Transformer.build_bytes(config) == real
        assert real >= config.max_positions * config.d_model * 4


def test_out_of_memory_building_counts_the_positional_table(tmp_path, toy_tokenizer, monkeypatch):
    """At the cap, the 8 MiB positional table of a d_model 32 model is 14 times its 0.6 MB
    file: the line states what building needs, not the file's size."""
    state = random_state(toy_tokenizer, max_positions=MAX_POSITIONS)
    path = tmp_path / "model.pt"
    torch.save(state, path)

    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")

    monkeypatch.setattr(Transformer, "load_state_dict", no_memory)
    with pytest.raises(CheckpointError) as refused:
        model_from_checkpoint(load_checkpoint(path), source=path)
    message = str(refused.value)
    assert message.startswith(f"{path}: out of memory loading the model: it needs at least")
    need = int(re.search(r"needs at least (\d+) MiB", message)[1])
    table = MAX_POSITIONS * 32 * 4 / 2**20
    assert need >= table + path.stat().st_size / 2**20 - 1, message
    assert "to build the model, positional table included" in message


class Upper:
    """A translator that upper-cases: what reached it, in order."""

    def __init__(self):
        self.seen: list[str] = []

    def translate(self, lines, **options):
        self.seen += lines
        return [line.upper() for line in lines]


def test_an_over_long_line_is_refused_after_the_lines_before_it():
    lines = ["a dog runs\n", "a cat sleeps\n", "x" * 20_000 + "\n", "the child laughs\n"]
    translator = Upper()
    out = []
    with pytest.raises(LineTooLongError) as refused:
        for line in translate_stream(translator, lines, chunk_lines=10):
            out.append(line)
    assert out == ["A DOG RUNS", "A CAT SLEEPS"]  # the lines before it, then the error
    assert translator.seen == ["a dog runs", "a cat sleeps"]  # the long line never reached it
    message = str(refused.value)
    assert message.startswith("input line 3 has 20,000 characters")
    assert f"{MAX_LINE_CHARS:,} allowed" in message and "max_line_chars" in message
    assert "\n" not in message
    assert len(list(translate_stream(Upper(), lines, max_line_chars=20_000))) == 4
    assert len(list(translate_stream(Upper(), lines, max_line_chars=0))) == 4  # no limit
    with pytest.raises(ConfigError, match="max_line_chars: must be >= 0"):
        list(translate_stream(Upper(), lines, max_line_chars=-1))
