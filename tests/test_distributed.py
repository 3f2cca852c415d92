"""Training on two CPU processes (gloo) through `torchrun`, as users start it: DDP over
batches (b0, b1), (b2, b3)... equals one process with `accum_steps=2` over the same batches;
only rank 0 writes; a stop on one rank stops both at the same step; a run whose rank dies
(SIGKILL) resumes to exactly the weights of an uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nmt.checkpoint import load_checkpoint
from nmt.data.batching import EpochIterator
from nmt.training import distributed
from nmt.training.run import train

from .test_train import toy_config, toy_overrides, train_losses
from .toys import write_toy_corpus

STEPS = 30  # log every 5, checkpoint every 10 (tests/test_train.py's toy run)

# A worker that runs `nmt-train` as `python -m nmt train` does, except that rank 1 sends
# itself a signal before the update after NMT_TEST_SIGNAL's step ("TERM:12", "KILL:26").
HOOK = """
import os, signal, sys
from nmt.cli import train_main
from nmt.training.trainer import Trainer

name, after = os.environ["NMT_TEST_SIGNAL"].split(":")
step_once = Trainer.train_step

def step_or_signal(self):
    if self.rank == 1 and self.state.step == int(after):
        os.kill(os.getpid(), getattr(signal, "SIG" + name))
    return step_once(self)

Trainer.train_step = step_or_signal
sys.exit(train_main(sys.argv[1:]))
"""


def torchrun(
    run_dir: Path, corpus: Path, *extra: str, resume: bool = False, hook: Path | None = None, **env
) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m nmt train` (or the hook script) on the
    toy run of `STEPS` updates; the finished process."""
    sets = toy_overrides(run_dir, corpus, f"train.max_steps={STEPS}", *extra)
    target = [str(hook)] if hook else ["-m", "nmt", "train"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", *target, *(a for kv in sets for a in ("--set", kv))]
    command += ["--resume"] if resume else []
    return subprocess.run(
        command,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("ddp") / "toy")


@pytest.fixture(scope="module")
def ddp_run(corpus) -> Path:
    """An uninterrupted 2-process run of STEPS updates."""
    run = corpus.parent / "ddp"
    done = torchrun(run, corpus)
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def test_two_processes_equal_one_with_two_accumulation_steps(ddp_run, corpus):
    one = corpus.parent / "one"
    summary = train(toy_config(one, corpus, f"train.max_steps={STEPS}", "train.accum_steps=2"))
    ddp, single = train_losses(ddp_run), train_losses(one)
    assert [s for s, _ in ddp] == [s for s, _ in single] == list(range(5, STEPS + 1, 5))
    assert all(a == pytest.approx(b, rel=1e-5) for (_, a), (_, b) in zip(ddp, single, strict=True))
    a, b = weights(ddp_run), weights(one)
    assert a.keys() == b.keys()  # the unwrapped model's names: no DDP "module." prefix
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)
    ddp_summary = json.loads((ddp_run / "summary.json").read_text())
    assert (ddp_summary["world_size"], ddp_summary["batches_per_update"]) == (2, 2)
    assert (summary["world_size"], summary["batches_per_update"]) == (1, 2)
    assert ddp_summary["target_tokens"] == summary["target_tokens"]


def test_only_rank_0_writes(ddp_run):
    records = [json.loads(line) for line in (ddp_run / "log.jsonl").read_text().splitlines()]
    assert [(r["type"], r["step"]) for r in records] == [
        *(("train", s) for s in range(5, STEPS + 1, 5)),
        ("valid", STEPS),
    ]
    assert (ddp_run / "train.log").read_text().count(f"step {STEPS}/{STEPS} |") == 1
    last = load_checkpoint(ddp_run / "last.pt")
    assert len(last["rng"]["per_rank"]) == 2  # each rank's RNG, for an exact resume
    assert not torch.equal(last["rng"]["per_rank"][0]["torch"], last["rng"]["per_rank"][1]["torch"])
    kept = sorted(p.name for p in (ddp_run / "checkpoints").iterdir())
    assert kept == ["step_10.pt", "step_20.pt", "step_30.pt"]  # no temporaries left either


def test_a_stop_on_one_rank_and_a_killed_rank_resume_to_the_same_run(ddp_run, corpus, tmp_path):
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK)
    run = tmp_path / "run"
    # SIGTERM to rank 1 during update 13: both ranks finish it, save and stop there.
    stopped = torchrun(run, corpus, hook=hook, NMT_TEST_SIGNAL="TERM:12")
    assert stopped.returncode != 0
    assert "stopped by SIGTERM at step 13" in stopped.stderr
    assert load_checkpoint(run / "last.pt")["step"] == 13
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_10.pt"]
    # Resumed, then rank 1 SIGKILLed during update 27: last.pt is step 20's, log.jsonl holds
    # rank 0's record of step 25, which the next resume drops and writes again.
    killed = torchrun(run, corpus, resume=True, hook=hook, NMT_TEST_SIGNAL="KILL:26")
    assert killed.returncode != 0
    assert load_checkpoint(run / "last.pt")["step"] == 20
    assert train_losses(run)[-1][0] == 25
    resumed = torchrun(run, corpus, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert train_losses(run) == train_losses(ddp_run)
    a, b = weights(ddp_run), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ranks_take_consecutive_batches_of_one_stream(corpus, toy_tokenizer):
    """Rank r of N takes global batch k*N + r at micro-step k, and every rank's iterator
    stays at the same position (what the trainer's `_next_batch` does)."""
    from nmt.data.corpus import encode_parallel, read_parallel

    data = encode_parallel(*read_parallel(corpus / "train.en", corpus / "train.de"), toy_tokenizer)
    stream = EpochIterator(data, 64, seed=1)
    batches = [next(stream) for _ in range(12)]
    ranks = [EpochIterator(data, 64, seed=1) for _ in range(3)]
    for k in range(4):
        for r, it in enumerate(ranks):
            it.skip(r)
            taken = next(it)
            it.skip(3 - 1 - r)
            assert all(torch.equal(x, y) for x, y in zip(taken, batches[3 * k + r], strict=True))
    assert all(it.state() == stream.state() for it in ranks)


def test_one_process_has_no_group():
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.broadcast_object("x") == "x" and distributed.gather_object(1) == [1]
    assert distributed.on_main(lambda: 3) == 3 and distributed.max_over_ranks(5) == 5
    assert not distributed.init("cpu")  # no torchrun environment: nothing to join
