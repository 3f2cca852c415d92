"""Checkpoints are data, not code: every loader refuses a pickle that would run something;
a run's summary cannot point outside the run; averaging refuses mixed tokenizers and never
replaces what it did not make."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from nmt.checkpoint import (
    CheckpointError,
    average_checkpoints,
    find_checkpoint,
    load_checkpoint,
    write_average,
)
from nmt.cli import (
    average_main,
    distill_main,
    evaluate_main,
    export_main,
    train_main,
    translate_main,
    vmap_main,
)
from nmt.outputs import MARKER
from nmt.tokenizer import Tokenizer

from .conftest import TOY_PAIRS
from .toys import random_state, write_toy_corpus


class Payload:
    """What a hostile checkpoint hides: unpickling it runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_checkpoint(path: Path, tokenizer: Tokenizer, marker: Path) -> Path:
    """A valid checkpoint (weights, config, tokenizer) plus the payload."""
    state = random_state(tokenizer)
    state["nmt_version"] = "0.1.0"
    state["note"] = Payload(marker)
    torch.save(state, path)
    return path


@pytest.fixture
def hostile(tmp_path, toy_tokenizer) -> tuple[Path, Path]:
    marker = tmp_path / "PAYLOAD_RAN"
    return hostile_checkpoint(tmp_path / "model.pt", toy_tokenizer, marker), marker


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_loading_refuses_code_and_never_runs_it(hostile):
    checkpoint, marker = hostile
    with pytest.raises(CheckpointError, match="contains code objects.*GLOBAL posix.system"):
        load_checkpoint(checkpoint)
    assert not marker.exists()


def test_every_loader_refuses_the_hostile_checkpoint(hostile, tmp_path, capsys):
    checkpoint, marker = hostile
    corpus = write_toy_corpus(tmp_path / "toy")
    src, tgt = corpus / "val.en", corpus / "val.de"
    run = tmp_path / "run"  # a run whose last.pt is the hostile file: --resume loads it
    run.mkdir()
    (run / "last.pt").write_bytes(checkpoint.read_bytes())
    (run / MARKER).write_text('{"kind": "nmt-train"}')  # a run folder unpacked from elsewhere
    train_args = [
        f"run_dir={run}",
        f"data.data_dir={corpus}",
        "tokenizer.vocab_size=60",
        "tokenizer.byte_fallback=false",
        "train.threads=1",
    ]
    calls = {
        "translate": lambda: translate_main(["-m", str(checkpoint), "-i", str(src)]),
        "export": lambda: export_main([str(checkpoint), "-o", str(tmp_path / "exp")]),
        "average": lambda: average_main(
            [str(checkpoint), str(checkpoint), "-o", str(tmp_path / "avg.pt")]
        ),
        "train --resume": lambda: train_main(
            [a for kv in train_args for a in ("--set", kv)] + ["--resume"]
        ),
        "evaluate": lambda: evaluate_main(
            ["-m", str(checkpoint), "--src", str(src), "--ref", str(tgt), "-o", str(tmp_path / "e")]
        ),
        "vmap": lambda: vmap_main(
            ["--model", str(checkpoint), "--src", str(src), "--tgt", str(tgt)]
            + ["-o", str(tmp_path / "x.vmap")]
        ),
        "distill": lambda: distill_main(
            ["--teacher", str(checkpoint), "--data", str(corpus), "-o", str(tmp_path / "d")]
        ),
    }
    for name, call in calls.items():
        assert call() == 2, name
        assert "contains code objects" in one_line(capsys), name
        assert not marker.exists(), f"{name} ran the payload"


def test_checkpoints_of_earlier_versions_load(tmp_path, toy_tokenizer):
    """Before checkpoints were plain data they held `torch.__version__` as TorchVersion."""
    state = random_state(toy_tokenizer)
    state["torch_version"] = torch.__version__
    assert type(state["torch_version"]) is not str
    torch.save(state, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["torch_version"] == torch.__version__


def test_the_summary_cannot_point_outside_the_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    (tmp_path / "elsewhere.pt").write_bytes(b"")
    for escape in ("../elsewhere.pt", str(tmp_path / "elsewhere.pt"), "..", "sub/../../x.pt"):
        (run / "summary.json").write_text(json.dumps({"checkpoint": escape}))
        with pytest.raises(CheckpointError, match="not a file of the run folder"):
            find_checkpoint(run)
    (run / "summary.json").write_text(json.dumps({"checkpoint": "last.pt"}))
    assert find_checkpoint(run) == run / "last.pt"


def test_averaging_refuses_different_tokenizers(tmp_path, toy_tokenizer):
    from nmt.config import TokenizerConfig
    from nmt.tokenizer import train_tokenizer

    texts = [*(t for _, t in TOY_PAIRS), *(s for s, _ in TOY_PAIRS)] * 4
    other = train_tokenizer(
        texts[::-1] + ["zebra xylophone quartz"] * 3,
        TokenizerConfig(vocab_size=60, byte_fallback=False),
        tmp_path / "other.model",
    )
    assert other.vocab_size == toy_tokenizer.vocab_size  # same shape: only the pieces differ
    a, b = random_state(toy_tokenizer, seed=0), random_state(other, seed=1)
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="tokenizer differs"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    torch.save(random_state(toy_tokenizer, seed=1), tmp_path / "c.pt")
    averaged = average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt"])
    assert averaged["tokenizer_model"] == toy_tokenizer.model_proto


def test_average_replaces_only_an_average(tmp_path, toy_tokenizer, capsys):
    torch.save(random_state(toy_tokenizer, seed=0), tmp_path / "a.pt")
    torch.save(random_state(toy_tokenizer, seed=1), tmp_path / "b.pt")
    inputs = [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    out = tmp_path / "avg.pt"
    assert average_main([*inputs, "-o", str(out)]) == 0
    first = out.read_bytes()
    assert average_main([*inputs, "-o", str(out)]) == 2  # exists: needs --force
    assert "already exists" in one_line(capsys)
    assert average_main([*inputs, "-o", str(out), "--force"]) == 0  # an average: replaced
    assert load_checkpoint(out)["averaged_from"] == inputs
    for victim in (notes, tmp_path / "a.pt"):  # a user's file, an input: never
        before = victim.read_bytes()
        assert average_main([*inputs, "-o", str(victim), "--force"]) == 2
        capsys.readouterr()
        assert victim.read_bytes() == before
    with pytest.raises(FileExistsError):  # no --force: fails even if made meanwhile
        write_average(inputs, out)
    assert len(first) > 0


def test_averaging_keeps_tied_weights_tied(tmp_path, toy_tokenizer):
    for seed in (0, 1):
        torch.save(random_state(toy_tokenizer, seed, tie_embeddings=True), tmp_path / f"{seed}.pt")
    model = average_checkpoints([tmp_path / "0.pt", tmp_path / "1.pt"])["model"]
    assert model["output.weight"] is model["embed.weight"] is model["tgt_embed.weight"]
