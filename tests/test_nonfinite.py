"""NaN and infinity: refused in every config, skipped and then stopped in training, never
written into a checkpoint."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import typing

import pytest
import torch

import nmt.bench.grid as grid
import nmt.config as config
import nmt.decoding as decoding
import nmt.distill as distill
import nmt.pipeline as pipeline
import nmt.prepare.config as prepare_config
from nmt.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_average
from nmt.cli import train_main
from nmt.config import ConfigError, load_run_config
from nmt.fileio import atomic_torch_save
from nmt.model import Transformer
from nmt.training.run import train
from nmt.training.step import MAX_NONFINITE_UPDATES, TrainingDiverged
from nmt.training.validation import label_smoothed_loss

from .conftest import tiny_config
from .test_train import toy_config, toy_overrides


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def weights_finite(path) -> bool:
    return all(torch.isfinite(t).all() for t in load_checkpoint(path)["model"].values())


# ---- configs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "shown", "allowed"),
    [
        ("train.lr=.inf", "inf", "> 0"),
        ("train.lr=-.inf", "-inf", "> 0"),
        ("train.lr=.nan", "nan", "> 0"),
        ("train.lr=1e999", "inf", "> 0"),  # a string to YAML, a float overflow to Python
        ("train.lr=1" + "0" * 400, "401 digits", "finite"),  # an int no float holds
        ("train.lr=nan", "'nan'", "float"),  # a string to YAML: the wrong type
        ("train.weight_decay=-0.1", "-0.1", ">= 0"),
        ("train.weight_decay=.nan", "nan", ">= 0"),
        ("train.weight_decay=.inf", "inf", ">= 0"),
        ("model.layer_norm_eps=.nan", "nan", "> 0"),
        ("model.layer_norm_eps=0", "0.0", "positive"),
        ("model.layer_norm_eps=-1e-6", "-1e-06", "positive"),
        ("train.adam_eps=0", "0.0", "positive"),
        ("train.beta1=1", "1.0", "[0, 1)"),
        ("train.beta2=.nan", "nan", "[0, 1)"),
        ("train.clip_norm=.inf", "inf", ">= 0"),
        ("train.label_smoothing=.nan", "nan", "[0, 1)"),
        ("train.max_minutes=.inf", "inf", ">= 0"),
        ("model.dropout=.inf", "inf", "[0, 1)"),
        ("train.scheduled_sampling.k=.inf", "inf", "> 0"),
        ("data.max_ratio=.inf", "inf", ">= 1"),
    ],
)
def test_set_refuses_non_finite_and_out_of_range_values(override, shown, allowed):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as refused:
        load_run_config(None, [override])
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{key}: ") and f"got {shown}" in message, message
    assert allowed in message, message


def test_a_yaml_file_with_an_infinite_lr_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: .inf\n")
    with pytest.raises(ConfigError, match=r": train\.lr: must be a finite number > 0, got inf$"):
        load_run_config(path)


# Every config class that has float settings, each with a valid instance.
CONFIGS = [
    config.ModelConfig(),
    config.TokenizerConfig(),
    config.DataConfig(),
    config.ScheduledSamplingConfig(),
    config.ScheduledSamplingConfig(schedule="exponential", k=0.99),
    config.ScheduledSamplingConfig(schedule="inverse_sigmoid", k=10.0),
    config.TrainConfig(),
    prepare_config.CorpusSpec(name="a", path="corpus"),
    prepare_config.PrepareConfig(),
    decoding.Decoding(),
    distill.FilterConfig(),
    distill.DistillConfig(),
    grid.Decoding(),
    grid.BenchConfig(
        models=(grid.ModelEntry(name="m", path="model"),),
        test_sets=(grid.TestSet(name="t", src="src.txt", ref="ref.txt"),),
    ),
    pipeline.BenchStage(),
    pipeline.ReleaseStage(),
    pipeline.PipelineConfig(
        root="root",
        teacher=pipeline.RunStage(name="teacher", config="t.yaml"),
        students=(pipeline.RunStage(name="student", config="s.yaml"),),
    ),
]
FLOAT_SETTINGS = [
    pytest.param(instance, name, id=f"{type(instance).__name__}.{name}")
    for instance in CONFIGS
    for name, hint in typing.get_type_hints(type(instance)).items()
    if hint is float
]


@pytest.mark.parametrize(("instance", "name"), FLOAT_SETTINGS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_every_float_setting_refuses_nan_and_infinity(instance, name, value):
    with pytest.raises(ConfigError) as refused:
        dataclasses.replace(instance, **{name: value})
    message = str(refused.value)
    assert name in message.split(":")[0] and f"got {value!r}" in message, message


def test_train_cli_refuses_an_infinite_lr_in_one_line_and_creates_nothing(
    tmp_path, toy_corpus, capsys
):
    sets = toy_overrides(tmp_path / "run", toy_corpus, "train.max_steps=3", "train.lr=.inf")
    assert train_main([a for s in sets for a in ("--set", s)]) == 2
    assert one_line_error(capsys) == "error: train.lr: must be a finite number > 0, got inf"
    assert not (tmp_path / "run").exists()


# ---- training -------------------------------------------------------------------------


def nan_losses(monkeypatch, first: int, last: int | None = None) -> None:
    """Make the training loss NaN from update `first` to `last` (1-based, inclusive)."""
    calls = itertools.count(1)

    def loss(logits, target, smoothing):
        loss, nll, tokens = label_smoothed_loss(logits, target, smoothing)
        n = next(calls)
        if n >= first and (last is None or n <= last):
            loss = loss * math.nan
        return loss, nll, tokens

    monkeypatch.setattr("nmt.training.step.label_smoothed_loss", loss)


def test_a_huge_lr_stops_the_run_in_one_line_and_writes_no_nan_checkpoint(
    tmp_path, toy_corpus, capsys
):
    run = tmp_path / "run"
    sets = toy_overrides(
        run, toy_corpus, "train.max_steps=30", "train.lr=1e30", "train.warmup_steps=0"
    )
    assert train_main([a for s in sets for a in ("--set", s)]) == 2
    line = one_line_error(capsys)
    assert "training diverged at step" in line and "loss nan" in line, line
    assert "lower train.lr (now 1e+30)" in line and "check the training data" in line, line
    for path in run.rglob("*.pt"):
        assert weights_finite(path), path


def test_nan_losses_stop_the_run_and_leave_its_checkpoints_finite(
    tmp_path, toy_corpus, monkeypatch
):
    nan_losses(monkeypatch, first=13)
    run = tmp_path / "run"
    c = toy_config(run, toy_corpus, "train.max_steps=30", "train.valid_every=5")
    with pytest.raises(TrainingDiverged, match=f"at step {12 + MAX_NONFINITE_UPDATES}: loss nan"):
        train(c)
    assert load_checkpoint(run / "last.pt")["step"] == 10  # the last save before the NaNs
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_10.pt"]
    for name in ("last.pt", "best.pt", "checkpoints/step_10.pt"):
        assert weights_finite(run / name), name
    assert not (run / "averaged.pt").exists()


def test_a_lone_nan_loss_skips_its_update_and_training_goes_on(
    tmp_path, toy_corpus, monkeypatch, caplog
):
    nan_losses(monkeypatch, first=5, last=4 + MAX_NONFINITE_UPDATES - 1)
    run = tmp_path / "run"
    summary = train(toy_config(run, toy_corpus, "train.max_steps=20", "train.average_last=2"))
    assert summary["steps"] == 20
    assert "step 5: loss nan, gradient norm nan: update skipped (1 in a row" in caplog.text
    assert "step 6: loss nan" in caplog.text and "step 7: loss nan" not in caplog.text
    for name in ("last.pt", "best.pt", "averaged.pt"):
        assert weights_finite(run / name), name
    logged = map(json.loads, (run / "log.jsonl").read_text().splitlines())
    assert all(math.isfinite(r["loss"]) for r in logged if r["type"] == "train")


# ---- checkpoints ----------------------------------------------------------------------


def test_a_checkpoint_with_nan_weights_is_not_written(tmp_path):
    torch.manual_seed(0)
    model = Transformer(tiny_config())
    run_config = {"model": dataclasses.asdict(model.config)}
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, run_config, "sha", step=1)
    before = path.read_bytes()
    with torch.no_grad():
        next(model.parameters())[0, 0] = math.inf
    with pytest.raises(CheckpointError, match=r"last\.pt: not written: .*NaN or infinity"):
        save_checkpoint(path, model, run_config, "sha", step=2)
    assert path.read_bytes() == before  # the previous checkpoint, as it was


def test_averaging_refuses_a_checkpoint_with_nan_weights(tmp_path):
    torch.manual_seed(0)
    model = Transformer(tiny_config())
    run_config = {"model": dataclasses.asdict(model.config)}
    good, bad = tmp_path / "step_1.pt", tmp_path / "step_2.pt"
    save_checkpoint(good, model, run_config, "sha", step=1)
    state = load_checkpoint(good)
    state["model"] = {k: v.clone() for k, v in state["model"].items()}
    next(iter(state["model"].values())).fill_(math.nan)
    atomic_torch_save(state, bad)  # as an older nmt wrote it
    with pytest.raises(CheckpointError, match=r"step_2\.pt: weights hold NaN or infinity"):
        write_average([good, bad], tmp_path / "averaged.pt")
    assert not (tmp_path / "averaged.pt").exists()
