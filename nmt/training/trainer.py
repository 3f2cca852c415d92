"""`nmt-train`: train a Transformer from a `RunConfig`, resumable at every saved step.

The run folder holds everything: `config.yaml`, `spm.model`, `train.log` (the log),
`log.jsonl` (one JSON line per log interval and per validation), `last.pt` (the full resume
state: model, optimizer, scheduler, step, RNG and data position), `checkpoints/step_N.pt`
(the last N weights, for averaging), `best.pt` (best dev BLEU), `averaged.pt` and
`summary.json` at the end.

A run killed at any moment (SIGKILL, power loss) resumes with `--resume` from its last
complete `last.pt` and ends with the same weights as an uninterrupted run: every file is
written atomically, a resumed run drops the `log.jsonl` records written after its
checkpoint (they are written again), and benchmarks/crash_resume.py checks it.
SIGTERM or Ctrl-C (SIGINT) stops a run cleanly: the current step ends, `last.pt` is written
and `TrainingStopped` is raised (the CLI exits with 128 + the signal number); a second signal
stops at once, from the previous `last.pt`.

Under torchrun (`nmt.training.distributed`) one `Trainer` runs in every process, over DDP. All walk
the same seeded batch stream and, per micro-step, rank r takes the r-th of the next `world`
batches: N processes with `accum_steps` A make the updates of one process with N x A (DDP
averages the gradients, as accumulation does). Rank 0 alone touches the run folder: it
reads the parent, the tokenizer and `last.pt` and shares them; it validates, logs and writes
the checkpoints, with every rank's RNG state and log window, while the others wait. Stops
(time budget, early stopping, a signal on any rank) are agreed, so all ranks stop at the
same step, and a resumed run of as many processes replays the uninterrupted one.

The `Trainer` ties together the modules beside it: `folder` opens the run folder (and its
`train.log`), `data` reads the tokenizer and corpora, `step` makes one optimizer update (the
one `probe` times for the pipeline's estimate), `validation` scores the dev set,
`checkpoints` writes the checkpoint files, `state` is what `last.pt` holds for a resume,
`report` the log lines, `log.jsonl` records and `summary.json`, `stopping` the signals.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from nmt.config import RunConfig, replace
from nmt.data.batching import EpochIterator
from nmt.decoding import cap_threads
from nmt.fileio import atomic_write_text
from nmt.model import Transformer
from nmt.training import distributed
from nmt.training.checkpoints import RunCheckpoints
from nmt.training.data import run_data
from nmt.training.finetune import Parent, describe_start, load_parent, parent_weights
from nmt.training.folder import open_run
from nmt.training.optim import pick_device, pick_precision
from nmt.training.report import (
    LogWindow,
    log_start,
    log_validation,
    run_summary,
    show_train_record,
    train_record,
)
from nmt.training.runlog import RunLog
from nmt.training.state import TrainState, merge_ranks, rank_state, restore_rank, resume_point
from nmt.training.step import Batch, Step, optimization
from nmt.training.stopping import TrainingStopped, stop_requests
from nmt.training.validation import validate
from nmt.training.word_kd import Teachers

log = logging.getLogger(__name__)


class Trainer:
    """One training run; in a process group (torchrun), one per rank (module docstring).
    A context manager: leaving it, or `close`, removes the run's `train.log` from the `nmt`
    logger (an error while setting up removes it at once)."""

    def __init__(self, config: RunConfig, resume: bool = False):
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.resume = resume
        self.world = distributed.world_size()
        self.rank = distributed.rank() if self.world > 1 else 0
        self.main = self.rank == 0
        c = config.train
        if c.threads:
            torch.set_num_threads(cap_threads(c.threads, "train.threads"))
        self.device = distributed.local_device(pick_device(c.device))
        self.amp_dtype = pick_precision(c.precision, self.device)
        # Rank 0 alone reads the parent: the others get its weights from DDP's broadcast.
        self.parent: Parent | None = load_parent(c.init_from) if c.init_from and self.main else None
        with contextlib.ExitStack() as cleanup:
            self.tokenizer = open_run(config, resume, self.parent, cleanup)
            self._set_up()
            self._cleanup = cleanup.pop_all()  # set up: `close` removes the handler

    def close(self) -> None:
        self._cleanup.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- setup -------------------------------------------------------------------------
    def _set_up(self) -> None:
        """The data, the model, its optimizer and update, and where a resumed run was."""
        self.data = run_data(self.config, self.tokenizer)
        self.run_log = RunLog(self.run_dir / "log.jsonl")
        self.config = config = replace(
            self.config, model=replace(self.config.model, vocab_size=self.tokenizer.vocab_size)
        )
        c = config.train
        self.model = self._new_model()
        self.optimizer, self.scheduler, self.scaler = optimization(self.model, c, self.amp_dtype)
        self.checkpoints = RunCheckpoints(
            self.run_dir, config.to_dict(), self.tokenizer, self.parent, c.keep_last
        )
        self.state = TrainState()
        self.batches = self._batch_stream()
        ckpt = distributed.on_main(
            lambda: resume_point(self.checkpoints, self.run_log, self.resume)
        )
        if ckpt is not None:
            self._restore(ckpt)
        self.window = LogWindow(self.state, self.device, self.world)
        self.stepper = self._new_step()

    def _new_model(self) -> Transformer:
        """The model, seeded alike on every rank, with the parent's weights if it has one."""
        c = self.config.train
        torch.manual_seed(c.seed)
        model = Transformer(self.config.model).to(self.device)
        if self.world > 1:
            torch.manual_seed(c.seed + self.rank)  # each rank its own dropout masks
        if self.parent is not None:
            model.load_state_dict(parent_weights(self.parent, self.config.model, c))
            log.info(
                "fine-tuning from %s (sha256 %s): fresh optimizer and schedule%s",
                self.parent.path,
                self.parent.sha256[:12],
                describe_start(c),
            )
        return model

    def _new_step(self) -> Step:
        """The optimizer update; in a process group over DDP, which gives every rank rank
        0's weights and averages the gradients; through `torch.compile` if asked."""
        c = self.config.train
        ddp: DistributedDataParallel | None = None
        module: torch.nn.Module = self.model
        if self.world > 1:
            ddp = module = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                forward_sync_buffers=False,  # the one buffer, the position table, is constant
                # Frozen parameters get no gradient: DDP must not wait for theirs.
                find_unused_parameters=c.freeze_embeddings or c.freeze_encoder,
            )
        forward = torch.compile(module, dynamic=True) if c.compile else module
        parts = (self.optimizer, self.scheduler, self.scaler)
        teachers = None
        if c.kd_teachers:  # word-level distillation: every rank runs the teachers itself
            teachers = Teachers(list(c.kd_teachers), self.tokenizer, self.device)
        return Step(
            self.model, forward, *parts, c, self.device, self.amp_dtype, ddp, self.run_dir, teachers
        )

    def _batch_stream(self, position: dict[str, int] | None = None):
        """The training batches from `position` (a checkpoint's `data`): token-bucketed
        epochs over the corpus (`EpochIterator`), or, for prepared data mixed by weights,
        window by window over the shards (`nmt.prepare.shards.ShardBatches`)."""
        c, position = self.config.train, position or {}
        if self.data.weighted is not None:
            return self.data.weighted(c.batch_tokens, c.seed, **position)
        return EpochIterator(self.data.train, c.batch_tokens, c.seed, **position)

    # ---- checkpoints -------------------------------------------------------------------
    def save(self, snapshot: bool = True) -> None:
        """Write `checkpoints/step_N.pt` (unless `snapshot` is false: a stop between saving
        steps must not change which snapshots get averaged), then `last.pt`; a failed write
        (a full disk) ends the run with an error naming the file and leaves the previous
        `last.pt` intact. Every rank calls it: rank 0 writes, with every rank's RNG state
        and log window, while the others wait (and share its error)."""
        ranks = distributed.gather_object(rank_state(self.window.rank_sums(), self.device))
        distributed.on_main(lambda: self._save(snapshot, ranks))

    def _save(self, snapshot: bool, ranks: list[dict[str, Any]]) -> None:
        rng = merge_ranks(self.state, ranks)
        self.checkpoints.save(
            self.model,
            self.state.step,
            snapshot,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng,
            data=self.batches.state(),
            train_state=asdict(self.state),
        )

    def _restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from `last.pt`: weights, optimizer, schedule, state, RNG, data position."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["train_state"])
        c = self.config.train
        restore_rank(self.state, ckpt["rng"], self.rank, self.world, c, self.device)
        self.batches = self._batch_stream(ckpt["data"])
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            self.run_dir / "last.pt",
            self.state.step,
            ckpt["data"]["epoch"],
            ckpt["data"]["index"],
        )

    # ---- training ----------------------------------------------------------------------
    def _next_batch(self) -> Batch:
        """This rank's batch: of the next `world` batches of the stream, which every rank
        walks alike (and so stays at the same position), rank r takes the r-th."""
        self.batches.skip(self.rank)
        batch = next(self.batches)
        self.batches.skip(self.world - 1 - self.rank)
        return batch

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer update over `accum_steps` batches (on each rank); returns this
        rank's summed loss, nll, tokens."""
        return self.stepper(self._next_batch, self.state.step)

    def validate(self) -> dict[str, Any]:
        c = self.config.train
        return {
            "step": self.state.step,
            **validate(
                self.model,
                self.data.valid,
                self.data.valid_text if c.valid_bleu else None,
                self.tokenizer,
                c.valid_batch_tokens,
                c.label_smoothing,
                self.device,
            ),
        }

    def _after_validation(self, result: dict[str, Any]) -> bool:
        """Record a validation, keep the best checkpoint; True when early stopping triggers."""
        s, c = self.state, self.config.train
        s.validations.append(result)
        improved = (
            result["valid_bleu"] > s.best_bleu
            if "valid_bleu" in result
            else result["valid_loss"] < s.best_loss
        )
        s.best_loss = min(s.best_loss, result["valid_loss"])
        if improved:
            s.best_bleu = max(s.best_bleu, result.get("valid_bleu", -1.0))
            s.bad_validations = 0
            self.checkpoints.save_best(self.model, s.step, result)
        else:
            s.bad_validations += 1
        log_validation(s.step, result, improved)
        self.run_log.append({"type": "valid", **result})
        return c.patience > 0 and s.bad_validations >= c.patience

    def run(self) -> dict[str, Any]:
        """Train to `train.max_steps` or a stop (a time budget, early stopping: the summary
        says which; a signal: `TrainingStopped`), then `finish`."""
        c, s = self.config.train, self.state
        with stop_requests() as signals:
            log_start(self.model, c, self.device, self.amp_dtype, self.world)
            self.model.train()
            with tqdm(
                total=c.max_steps,
                initial=s.step,
                desc="train",
                unit="step",
                dynamic_ncols=True,
                disable=None if self.main else True,
            ) as bar:
                stop_reason = self._train(signals, bar)
            return self.finish(stop_reason)

    def _train(self, signals: list[int], bar: tqdm) -> str:
        """The updates, with their log lines, validations and checkpoints; why they ended."""
        c, s = self.config.train, self.state
        session_start, elapsed0 = time.perf_counter(), s.elapsed
        self.window.restart_clock()
        while s.step < c.max_steps:
            self.window.add(*self.train_step())
            s.step += 1
            bar.update(1)
            s.elapsed = elapsed0 + time.perf_counter() - session_start
            if s.step % c.log_every == 0:
                self._log_window(bar)
            stop_reason = self._validate_and_save()
            if stop_reason:
                return stop_reason
            self._stop_on_signal(signals)
        return "max_steps"

    def _validate_and_save(self) -> str | None:
        """Validate and save where due; the reason to stop at this step, if any. Every rank
        stops at the same step: at any rank's time budget or signal, or at rank 0's early
        stopping."""
        c, s = self.config.train, self.state
        out_of_time = c.max_minutes > 0 and bool(
            distributed.max_over_ranks(int(s.elapsed >= c.max_minutes * 60))
        )
        last = out_of_time or s.step == c.max_steps
        early = False
        if s.step % c.valid_every == 0 or last:
            early = distributed.on_main(lambda: self._after_validation(self.validate()))
        if s.step % c.save_every == 0 or last or early:
            self.save()
            self.window.restart_clock()  # don't bill checkpoint time to tok/s
        if early:
            return f"early stopping (patience {c.patience})"
        if out_of_time:
            return f"time budget ({c.max_minutes} min)"
        return None

    def _stop_on_signal(self, signals: list[int]) -> None:
        """After a SIGTERM or SIGINT on any rank: save (if this step did not) and stop."""
        signum = distributed.max_over_ranks(signals[0] if signals else 0)
        if signum:
            if self.state.step % self.config.train.save_every:
                self.save(snapshot=False)
            raise TrainingStopped(signum, self.state.step, self.run_dir)

    def _log_window(self, bar: tqdm) -> None:
        """Log the window's numbers, summed over the ranks (rank 0 writes), and start anew."""
        s = self.state
        window = self.window.take()
        lr = self.scheduler.get_last_lr()[0]
        record = train_record(self.config.train, s, window, self.batches.epoch, lr)
        record.update(self.stepper.take_padding())
        s.target_tokens += window[2]
        if self.main:
            show_train_record(record, bar, self.run_log, self.config.train.max_steps)

    # ---- the end -----------------------------------------------------------------------
    def finish(self, stop_reason: str) -> dict[str, Any]:
        """Rank 0 averages the last checkpoints (if asked) and writes summary.json; every
        rank returns the summary."""
        unlogged = self.window.totals()[2]  # the target tokens of the steps since the last log
        return distributed.on_main(lambda: self._summary(stop_reason, unlogged))

    def _summary(self, stop_reason: str, unlogged_tokens: int) -> dict[str, Any]:
        c = self.config.train
        summary = run_summary(
            c,
            self.state,
            stop_reason,
            unlogged_tokens,
            model=self.model,
            device=self.device,
            amp_dtype=self.amp_dtype,
            world=self.world,
            epochs=self.batches.epoch,
            train_stats=self.data.train.stats,
            parent=self.parent,
        )
        if self.stepper.teachers is not None:
            summary["kd_teachers"] = {"files": self.stepper.teachers.files, "weight": c.kd_weight}
        if c.average_last > 1:
            summary.update(self._average())
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary

    def _average(self) -> dict[str, Any]:
        """Average the last snapshots into `averaged.pt` and validate it (the model keeps
        its weights); the summary's `averaged` and `checkpoint` (the one to use)."""
        s = self.state
        averaged, snapshots = self.checkpoints.average(self.config.train.average_last)
        self.model.load_state_dict(averaged["model"])
        result = self.validate()
        result["averaged_from"] = [p.name for p in snapshots]
        self.run_log.append({"type": "valid_averaged", **result})
        log.info("averaged %d checkpoints: %s", len(snapshots), result)
        return {
            "averaged": result,
            "checkpoint": self.checkpoints.choose(result, s.best_bleu, s.best_loss),
        }
