"""nmt.training.checkpoints: a run folder's checkpoint files, rotation, resume state and choice."""

from __future__ import annotations

import pytest
import torch

from nmt.checkpoint import CheckpointError, load_checkpoint
from nmt.config import ModelConfig, RunConfig
from nmt.model import Transformer
from nmt.training.checkpoints import RunCheckpoints

RESUME = dict(optimizer={}, scheduler={}, data={"epoch": 0, "index": 0}, train_state={})


@pytest.fixture
def run(tmp_path, toy_tokenizer):
    config = RunConfig(
        model=ModelConfig(
            vocab_size=toy_tokenizer.vocab_size,
            d_model=16,
            heads=2,
            ffn=32,
            enc_layers=1,
            dec_layers=1,
        )
    )
    torch.manual_seed(0)
    model = Transformer(config.model)
    (tmp_path / "checkpoints").mkdir()
    return RunCheckpoints(tmp_path, config.to_dict(), toy_tokenizer, keep_last=3), model


def test_save_keeps_the_last_snapshots_and_a_loadable_resume_state(run):
    checkpoints, model = run
    for step in range(1, 6):
        checkpoints.save(model, step, snapshot=step != 4, **RESUME)
    assert [p.name for p in checkpoints.snapshots()] == ["step_2.pt", "step_3.pt", "step_5.pt"]
    state = checkpoints.resume_state()
    assert state["step"] == 5 and state["data"] == {"epoch": 0, "index": 0}
    assert state["tokenizer_sha256"] == checkpoints.tokenizer.sha256()
    assert "optimizer" not in load_checkpoint(checkpoints.snapshots()[0])  # weights only


def test_no_last_checkpoint_is_a_new_run(run):
    checkpoints, _ = run
    assert checkpoints.resume_state() is None


def test_a_checkpoint_without_resume_state_is_refused_by_name(run):
    checkpoints, model = run
    checkpoints.save_best(model, 3, {"valid_loss": 1.0})
    (checkpoints.run_dir / "best.pt").rename(checkpoints.last)
    with pytest.raises(CheckpointError, match=r"last\.pt: not a resume state \(no optimizer"):
        checkpoints.resume_state()


def test_a_failed_write_names_the_file_and_keeps_the_previous_last(run, monkeypatch):
    checkpoints, model = run
    checkpoints.save(model, 1, snapshot=True, **RESUME)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(checkpoints.last))

    monkeypatch.setattr("nmt.checkpoint.atomic_torch_save", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device.*make room"):
        checkpoints.save(model, 2, snapshot=False, **RESUME)
    assert checkpoints.resume_state()["step"] == 1


def test_average_writes_the_mean_of_the_last_snapshots(run):
    checkpoints, model = run
    weights = []
    for step in range(1, 4):
        with torch.no_grad():
            model.embed.weight.fill_(float(step))
        weights.append(float(step))
        checkpoints.save(model, step, snapshot=True, **RESUME)
    averaged, used = checkpoints.average(2)
    assert [p.name for p in used] == ["step_2.pt", "step_3.pt"]
    assert torch.allclose(averaged["model"]["embed.weight"], torch.tensor(2.5))
    assert (checkpoints.run_dir / "averaged.pt").is_file()


@pytest.mark.parametrize(
    ("averaged", "chosen"),
    [
        ({"valid_bleu": 30.0, "valid_loss": 2.0}, "averaged.pt"),
        ({"valid_bleu": 20.0, "valid_loss": 1.0}, "best.pt"),  # BLEU decides when there is one
        ({"valid_loss": 2.5}, "best.pt"),
        ({"valid_loss": 1.5}, "averaged.pt"),
    ],
)
def test_choose_keeps_best_when_the_average_is_worse(run, averaged, chosen):
    checkpoints, model = run
    checkpoints.save_best(model, 1, {"valid_loss": 2.0})
    assert checkpoints.choose(averaged, best_bleu=25.0, best_loss=2.0) == chosen


def test_choose_takes_the_average_when_there_is_no_best(run):
    checkpoints, _ = run
    assert checkpoints.choose({"valid_loss": 9.0}, best_bleu=-1.0, best_loss=2.0) == "averaged.pt"
