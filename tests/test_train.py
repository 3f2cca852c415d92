"""End-to-end training on a toy corpus: overfitting, resume, checkpoints, translate CLI."""

import json
import logging
import signal

import pytest
import torch

from nmt.checkpoint import find_checkpoint, load_checkpoint
from nmt.cli import translate_main
from nmt.config import ConfigError, load_run_config
from nmt.training.run import train
from nmt.training.stopping import TrainingStopped
from nmt.training.trainer import Trainer
from nmt.translate import load

from .conftest import TOY_PAIRS


def toy_config(run_dir, data_dir, *extra):
    return load_run_config(None, toy_overrides(run_dir, data_dir, *extra))


def toy_overrides(run_dir, data_dir, *extra) -> list[str]:
    return [
        f"run_dir={run_dir}",
        f"data.data_dir={data_dir}",
        "data.valid=val",
        "tokenizer.vocab_size=60",
        "tokenizer.byte_fallback=false",
        "model.d_model=64",
        "model.heads=4",
        "model.ffn=128",
        "model.enc_layers=2",
        "model.dec_layers=2",
        "model.dropout=0.0",
        "model.attn_dropout=0.0",
        "model.max_positions=64",
        "train.precision=fp32",
        "train.threads=1",
        "train.batch_tokens=64",
        "train.lr=0.003",
        "train.warmup_steps=20",
        "train.label_smoothing=0.0",
        "train.log_every=5",
        "train.valid_every=1000",
        "train.valid_bleu=false",
        "train.save_every=10",
        "train.keep_last=3",
        *extra,
    ]


def train_losses(run_dir):
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["type"] == "train"]


def test_tiny_model_overfits_toy_pairs(tmp_path, toy_corpus):
    config = toy_config(tmp_path / "run", toy_corpus, "train.max_steps=250")
    summary = train(config)
    assert summary["steps"] == 250
    translator = load(tmp_path / "run")
    sources = [s for s, _ in TOY_PAIRS]
    assert translator.translate(sources, beam_size=1) == [t for _, t in TOY_PAIRS]
    assert translator.translate(sources, beam_size=4) == [t for _, t in TOY_PAIRS]


def test_log_records_the_share_of_padding(tmp_path, toy_corpus):
    """Each log window says which share of the batches' token slots was padding: none when
    every batch holds one sentence, some when sentences of several lengths share one."""

    def padding(name: str, *extra: str) -> tuple[float, float]:
        train(toy_config(tmp_path / name, toy_corpus, "train.max_steps=5", *extra))
        log = (tmp_path / name / "log.jsonl").read_text().splitlines()
        (record,) = [r for r in map(json.loads, log) if r["type"] == "train"]
        return record["src_padding"], record["tgt_padding"]

    assert padding("alone", "train.batch_tokens=2") == (0.0, 0.0)
    src, tgt = padding("shared", "train.batch_tokens=256")
    assert 0 < src < 1 and 0 < tgt < 1


def test_resume_gives_the_same_run_as_uninterrupted(tmp_path, toy_corpus):
    full = toy_config(tmp_path / "full", toy_corpus, "train.max_steps=30")
    train(full)
    part = toy_config(tmp_path / "part", toy_corpus, "train.max_steps=15")
    train(part)  # stops at 15; last.pt saved there (save_every 10 and at the end)
    resumed = toy_config(tmp_path / "part", toy_corpus, "train.max_steps=30")
    train(resumed, resume=True)
    assert train_losses(tmp_path / "part") == train_losses(tmp_path / "full")
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_saves_at_the_step_and_resumes_to_the_same_run(tmp_path, toy_corpus, monkeypatch):
    full = toy_config(tmp_path / "full", toy_corpus, "train.max_steps=30")
    train(full)
    step_once = Trainer.train_step

    def step_then_signal(self):
        result = step_once(self)
        if self.state.step == 12:  # the 13th step is running: the signal arrives mid-step
            signal.raise_signal(signal.SIGTERM)
        return result

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    part = toy_config(tmp_path / "part", toy_corpus, "train.max_steps=30")
    with pytest.raises(TrainingStopped, match="SIGTERM at step 13") as stopped:
        train(part)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler removed again
    assert load_checkpoint(tmp_path / "part" / "last.pt")["step"] == 13
    snapshots = sorted(p.name for p in (tmp_path / "part" / "checkpoints").iterdir())
    assert snapshots == ["step_10.pt"]  # no off-grid snapshot to skew averaging
    monkeypatch.setattr(Trainer, "train_step", step_once)
    summary = train(part, resume=True)
    # The log window (steps 11-13 here) is saved with the checkpoint: the line at step 15
    # covers steps 11-15 as in the uninterrupted run, and no target token goes uncounted.
    assert train_losses(tmp_path / "part") == train_losses(tmp_path / "full")
    full_summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["target_tokens"] == full_summary["target_tokens"]
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_needs_resume(tmp_path, toy_corpus):
    config = toy_config(tmp_path / "run", toy_corpus, "train.max_steps=2")
    train(config)
    with pytest.raises(ConfigError, match="--resume"):
        train(config)


def test_checkpoints_kept_and_averaged(tmp_path, toy_corpus):
    config = toy_config(tmp_path / "run", toy_corpus, "train.max_steps=50", "train.average_last=3")
    summary = train(config)
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert kept == ["step_30.pt", "step_40.pt", "step_50.pt"]
    averaged = load_checkpoint(tmp_path / "run" / "averaged.pt")
    assert averaged["averaged_from"][-1].endswith("step_50.pt")
    steps = [load_checkpoint(tmp_path / "run" / "checkpoints" / n)["model"] for n in kept]
    key = "encoder.0.ffn.fc1.weight"
    assert torch.allclose(averaged["model"][key], sum(s[key] for s in steps) / 3, atol=1e-6)
    assert "averaged" in summary
    # the run's model: the averaged one unless it scored lower on dev than best.pt
    averaged, validations = summary["averaged"], summary["validations"]
    if "valid_bleu" in averaged:
        worse = averaged["valid_bleu"] < summary["best_valid_bleu"]
    else:
        worse = averaged["valid_loss"] > min(v["valid_loss"] for v in validations)
    assert summary["checkpoint"] == ("best.pt" if worse else "averaged.pt")
    assert find_checkpoint(tmp_path / "run") == tmp_path / "run" / summary["checkpoint"]


def test_find_checkpoint_follows_the_summary(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("averaged.pt", "best.pt", "last.pt"):
        (run / name).write_bytes(b"")
    assert find_checkpoint(run) == run / "averaged.pt"  # no summary: the first there
    (run / "summary.json").write_text(json.dumps({"checkpoint": "best.pt"}))
    assert find_checkpoint(run) == run / "best.pt"
    (run / "best.pt").unlink()  # a choice whose file is gone: the first there
    assert find_checkpoint(run) == run / "averaged.pt"
    assert find_checkpoint(run / "last.pt") == run / "last.pt"


def test_translate_cli_keeps_lines_aligned(tmp_path, toy_corpus):
    train(toy_config(tmp_path / "run", toy_corpus, "train.max_steps=20"))
    src = tmp_path / "in.txt"
    src.write_text("a dog runs\n\n   \na cat sleeps\n")
    out = tmp_path / "out.txt"
    assert (
        translate_main(["-m", str(tmp_path / "run"), "-i", str(src), "-o", str(out), "--beam", "2"])
        == 0
    )
    lines = out.read_text().split("\n")
    assert len(lines) == 5 and lines[-1] == ""  # 4 lines, each newline-terminated
    assert lines[1] == "" and lines[2] == ""


def test_one_trainer_per_run_folder_and_resume_after_kill(tmp_path, toy_corpus):
    import os
    import subprocess
    import sys
    import time

    from nmt.outputs import FolderBusyError

    run = tmp_path / "run"
    sets = [a for kv in toy_overrides(run, toy_corpus) for a in ("--set", kv)]
    first = subprocess.Popen(
        [sys.executable, "-m", "nmt", "train", *sets, "--set", "train.max_steps=100000"],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists():  # the first trainer is under way
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(FolderBusyError, match=f"PID {first.pid}"):
            train(toy_config(run, toy_corpus, "train.max_steps=100000"), resume=True)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    step = load_checkpoint(run / "last.pt")["step"]
    summary = train(toy_config(run, toy_corpus, f"train.max_steps={step + 5}"), resume=True)
    assert summary["steps"] == step + 5  # no cleanup needed after the kill


def test_train_without_a_config_says_so_and_creates_nothing(tmp_path, monkeypatch, capsys):
    from nmt.cli import train_main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        train_main([])
    assert exited.value.code == 2
    assert "--config is needed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    # a config whose corpus is missing: one line, and no run folder left behind
    assert train_main(["--set", "run_dir=runs/x", "--set", "data.data_dir=nowhere"]) == 2
    assert "file not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("run_dir", ["", ".", "  ", "./"])
def test_the_current_folder_is_no_run_folder(run_dir):
    with pytest.raises(ConfigError, match="run_dir"):
        load_run_config(None, [f"run_dir={run_dir}"])


def test_learning_rate_schedules():
    from nmt.training.optim import lr_schedule

    inverse = lr_schedule("inverse_sqrt", 100, 1000)
    assert [inverse(s) for s in (1, 50, 100, 400)] == [0.01, 0.5, 1.0, 0.5]
    linear = lr_schedule("linear", 100, 1000)
    assert [linear(s) for s in (50, 100, 550, 1000)] == [0.5, 1.0, 0.5, 0.0]
    constant = lr_schedule("constant", 0, 1000)
    assert {constant(s) for s in (1, 500, 1000)} == {1.0}
    with pytest.raises(ConfigError, match="train.lr_schedule: must be"):
        load_run_config(None, ["train.lr_schedule=cosine"])


def test_train_log_is_released_however_the_run_ends(tmp_path, toy_corpus, monkeypatch):
    """`train` removes (and closes) its train.log handler from the `nmt` logger when it
    returns, when training fails and when setting up fails: no caller cleans up after it,
    and what runs next writes into no run's log."""
    nmt_logger = logging.getLogger("nmt")
    before = list(nmt_logger.handlers)
    train(toy_config(tmp_path / "done", toy_corpus, "train.max_steps=5"))
    assert nmt_logger.handlers == before

    def fail(self):
        logging.getLogger("nmt.test").warning("during the run")
        raise RuntimeError("failed in training")

    monkeypatch.setattr(Trainer, "train_step", fail)
    with pytest.raises(RuntimeError, match="failed in training"):
        train(toy_config(tmp_path / "failed", toy_corpus, "train.max_steps=5"))
    assert nmt_logger.handlers == before
    assert "during the run" in (tmp_path / "failed" / "train.log").read_text()

    def no_data(config, tokenizer):
        raise RuntimeError("failed in setting up")

    monkeypatch.setattr("nmt.training.trainer.run_data", no_data)
    with pytest.raises(RuntimeError, match="failed in setting up"):
        train(toy_config(tmp_path / "unset", toy_corpus, "train.max_steps=5"))
    assert nmt_logger.handlers == before
    logging.getLogger("nmt.test").warning("after the runs")
    for run in ("done", "failed", "unset"):
        assert "after the runs" not in (tmp_path / run / "train.log").read_text(), run


def test_the_speed_probe_times_the_trainers_own_update(tmp_path, toy_corpus, monkeypatch):
    """`probe_updates` runs `Step`, the update the trainer makes, one batch an update (the
    estimate multiplies by accum_steps), writes nothing and restores the thread count."""
    from nmt.training import probe, step
    from nmt.training.validation import label_smoothed_loss

    updates, batches = [], []
    real_step = step.Step.__call__

    def counted_step(self, next_batch, done):
        updates.append(done)
        return real_step(self, next_batch, done)

    def counted_loss(*args):
        batches.append(args[1].shape)
        return label_smoothed_loss(*args)

    monkeypatch.setattr(step.Step, "__call__", counted_step)
    monkeypatch.setattr(step, "label_smoothed_loss", counted_loss)
    threads = torch.get_num_threads()
    config = toy_config(tmp_path / "run", toy_corpus, "train.accum_steps=4")
    assert probe.probe_updates(config) > 0
    assert updates == list(range(probe.PROBE_UPDATES + 1))
    rows = config.train.batch_tokens // probe.PROBE_LENGTH
    assert batches == [(rows, probe.PROBE_LENGTH)] * (probe.PROBE_UPDATES + 1)
    assert torch.get_num_threads() == threads
    assert not (tmp_path / "run").exists()
