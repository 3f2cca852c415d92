"""`nmt-train`: train a Transformer from a `RunConfig`, resumable at every saved step.

The run folder holds everything: `config.yaml`, `spm.model`, `log.jsonl` (one JSON line per
log interval and per validation), `last.pt` (the full resume state: model, optimizer,
scheduler, step, RNG and data position), `checkpoints/step_N.pt` (the last N weights, for
averaging), `best.pt` (best dev BLEU), `averaged.pt` and `summary.json` at the end.

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
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from nmt import __version__
from nmt.config import ConfigError, RunConfig, replace
from nmt.data.batching import EpochIterator
from nmt.decoding import cap_threads
from nmt.fileio import atomic_write_text, remove_stale_temporaries
from nmt.machine import describe_cpu, hardware
from nmt.model import Transformer
from nmt.outputs import append_log, ensure_folder
from nmt.tokenizer import Tokenizer
from nmt.training import distributed
from nmt.training.checkpoints import RunCheckpoints
from nmt.training.data import run_data, run_tokenizer
from nmt.training.finetune import (
    Parent,
    apply_freezing,
    frozen_parameters,
    load_parent,
    parent_weights,
)
from nmt.training.optim import lr_schedule, make_optimizer, pick_device, pick_precision
from nmt.training.runlog import RunLog
from nmt.training.sampling import first_pass, mix_inputs, mixing_probability
from nmt.training.stopping import TrainingStopped, stop_requests
from nmt.training.validation import label_smoothed_loss, validate

log = logging.getLogger(__name__)

# Updates in a row whose loss is NaN or infinite (each one skipped) that stop the run.
MAX_NONFINITE_UPDATES = 3


class TrainingDiverged(ValueError):
    """The loss was not finite for `MAX_NONFINITE_UPDATES` updates in a row: the run stops
    there, its checkpoints as they were (a ValueError: the CLI says so in one line)."""


@dataclass
class TrainState:
    """What survives a restart besides the weights and optimizer."""

    step: int = 0
    elapsed: float = 0.0
    target_tokens: int = 0
    best_bleu: float = -1.0
    best_loss: float = float("inf")
    bad_validations: int = 0
    validations: list[dict[str, Any]] = field(default_factory=list)
    # The log window's sums since the last log line (loss, nll, target tokens): saved with
    # the checkpoint, so a resumed run logs and counts exactly what an uninterrupted one does.
    window_loss: float = 0.0
    window_nll: float = 0.0
    window_tokens: int = 0
    # In a run of several processes, each one's window sums by rank (window_* hold their
    # totals, which a resume by another number of processes starts from).
    rank_windows: list[list[float]] = field(default_factory=list)


class Trainer:
    """One training run; in a process group (torchrun), one per rank (module docstring)."""

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
        self.tokenizer = self._open_run()
        self.data = run_data(config, self.tokenizer)
        self.run_log = RunLog(self.run_dir / "log.jsonl")
        self.config = config = replace(
            config, model=replace(config.model, vocab_size=self.tokenizer.vocab_size)
        )
        torch.manual_seed(c.seed)
        self.model = Transformer(config.model).to(self.device)
        if self.world > 1:
            torch.manual_seed(c.seed + self.rank)  # each rank its own dropout masks
        if self.parent is not None:
            self.model.load_state_dict(parent_weights(self.parent, config.model, c))
            log.info(
                "fine-tuning from %s (sha256 %s): fresh optimizer and schedule%s",
                self.parent.path,
                self.parent.sha256[:12],
                self._frozen_note(),
            )
        self.optimizer = make_optimizer(self.model, c)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_schedule(c.lr_schedule, c.warmup_steps, c.max_steps)
        )
        self.scaler = torch.amp.GradScaler(enabled=self.amp_dtype == torch.float16)
        self.checkpoints = RunCheckpoints(
            self.run_dir, config.to_dict(), self.tokenizer, self.parent, c.keep_last
        )
        self.state = TrainState()
        self.nonfinite = 0  # updates in a row skipped for a NaN or infinite loss
        self.batches = self._batch_stream()
        resume_state = distributed.on_main(self._resume_state)
        if resume_state is not None:
            self._restore(resume_state)
        # The log window's sums (loss, nll, target tokens), as tensors: one host sync a log.
        s = self.state
        self.window = (
            torch.tensor(s.window_loss, dtype=torch.float32, device=self.device),
            torch.tensor(s.window_nll, dtype=torch.float32, device=self.device),
            torch.tensor(s.window_tokens, dtype=torch.int64, device=self.device),
        )
        self.ddp: DistributedDataParallel | None = None
        module: torch.nn.Module = self.model
        if self.world > 1:  # DDP gives every rank rank 0's weights and averages gradients
            self.ddp = module = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                forward_sync_buffers=False,  # the one buffer, the position table, is constant
                # Frozen parameters get no gradient: DDP must not wait for theirs.
                find_unused_parameters=c.freeze_embeddings or c.freeze_encoder,
            )
        self.forward = torch.compile(module, dynamic=True) if c.compile else module

    # ---- setup -------------------------------------------------------------------------
    def _batch_stream(self, position: dict[str, int] | None = None):
        """The training batches from `position` (a checkpoint's `data`): token-bucketed
        epochs over the corpus (`EpochIterator`), or, for prepared data mixed by weights,
        window by window over the shards (`nmt.prepare.shards.ShardBatches`)."""
        c, position = self.config.train, position or {}
        if self.data.weighted is not None:
            return self.data.weighted(c.batch_tokens, c.seed, **position)
        return EpochIterator(self.data.train, c.batch_tokens, c.seed, **position)

    def _open_run(self) -> Tokenizer:
        """Rank 0 prepares the run folder and finds the run's tokenizer; the other ranks
        receive its model (they never touch the run folder, which need not be shared)."""
        found: list[Tokenizer] = []

        def prepare() -> tuple[bytes, str]:
            self._prepare_run_dir()
            found.append(run_tokenizer(self.config, self.run_dir, self.parent))
            return found[0].model_proto, found[0].source

        proto, source = distributed.on_main(prepare)
        return found[0] if found else Tokenizer(proto, source)

    def _prepare_run_dir(self) -> None:
        if (self.run_dir / "last.pt").exists() and not self.resume:
            raise ConfigError(
                f"{self.run_dir}: run folder already holds a training run "
                "(last.pt); pass --resume to continue it or choose another run_dir"
            )
        ensure_folder(self.run_dir / "checkpoints")
        for folder in (self.run_dir, self.run_dir / "checkpoints"):
            remove_stale_temporaries(folder)
        config_path = self.run_dir / "config.yaml"
        if self.resume and config_path.exists():
            saved = yaml.safe_load(config_path.read_text())
            if saved.get("model") and {
                k: v for k, v in saved["model"].items() if k != "vocab_size"
            } != {k: v for k, v in asdict(self.config.model).items() if k != "vocab_size"}:
                raise ConfigError(
                    f"{config_path}: model section differs from the config "
                    "given to --resume; a run cannot change its architecture"
                )
        atomic_write_text(config_path, yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        handler = append_log(self.run_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("nmt").addHandler(handler)

    def _frozen_note(self) -> str:
        c = self.config.train
        picked = [
            f"{stack} layers {list(getattr(c, f'init_{stack}_layers'))}"
            for stack in ("encoder", "decoder")
            if getattr(c, f"init_{stack}_layers")
        ]
        note = f"; from the parent's {' and '.join(picked)}" if picked else ""
        frozen = [n for n in ("embeddings", "encoder") if getattr(c, f"freeze_{n}")]
        if not frozen:
            return note
        span = f"the first {c.freeze_steps} updates" if c.freeze_steps else "every update"
        return f"{note}; {' and '.join(frozen)} frozen for {span}"

    # ---- checkpoints -------------------------------------------------------------------
    def save(self, snapshot: bool = True) -> None:
        """Write `checkpoints/step_N.pt` (unless `snapshot` is false: a stop between saving
        steps must not change which snapshots get averaged), then `last.pt`; a failed write
        (a full disk) ends the run with an error naming the file and leaves the previous
        `last.pt` intact. Every rank calls it: rank 0 writes, with every rank's RNG state
        and log window, while the others wait (and share its error)."""
        ranks = distributed.gather_object(self._rank_state())
        distributed.on_main(lambda: self._save(snapshot, ranks))

    def _rank_state(self) -> dict[str, Any]:
        """What a resume needs of this rank besides the shared state: RNG and log window."""
        loss, nll, tokens = self.window
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        return {"rng": rng, "window": [float(loss), float(nll), int(tokens)]}

    def _save(self, snapshot: bool, ranks: list[dict[str, Any]]) -> None:
        s = self.state
        windows = [r["window"] for r in ranks]
        s.window_loss, s.window_nll, s.window_tokens = (
            sum(column) for column in zip(*windows, strict=True)
        )
        s.rank_windows = windows if len(ranks) > 1 else []
        rng = dict(ranks[0]["rng"])
        if len(ranks) > 1:
            rng["per_rank"] = [r["rng"] for r in ranks]
        self.checkpoints.save(
            self.model,
            s.step,
            snapshot,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng,
            data=self.batches.state(),
            train_state=asdict(s),
        )

    def _resume_state(self) -> dict[str, Any] | None:
        """Rank 0: `last.pt` to continue from (None for a new run), with `log.jsonl` trimmed
        back to its step."""
        ckpt = self.checkpoints.resume_state() if self.resume else None
        self.run_log.trim(ckpt["train_state"]["step"] if ckpt is not None else 0)
        return ckpt

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["train_state"])
        self._restore_rank(ckpt["rng"])
        self.batches = self._batch_stream(ckpt["data"])
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            self.run_dir / "last.pt",
            self.state.step,
            ckpt["data"]["epoch"],
            ckpt["data"]["index"],
        )

    def _restore_rank(self, rng: dict[str, Any]) -> None:
        """This rank's RNG state and log window. A run resumed by as many processes as saved
        it replays the uninterrupted one; by another number, rank 0 carries the window's
        totals and ranks beyond the saved ones start a fresh RNG stream."""
        s, saved = self.state, len(self.state.rank_windows) or 1
        own: dict[str, Any] | None = rng
        if saved == self.world and self.world > 1:
            own = rng["per_rank"][self.rank]
            s.window_loss, s.window_nll, s.window_tokens = s.rank_windows[self.rank]
        elif saved != self.world:
            if self.main:
                log.warning(
                    "last.pt was written by %d process(es), resumed by %d: an update takes "
                    "%d batches from here on (processes x train.accum_steps), and the run "
                    "differs from an uninterrupted one",
                    saved,
                    self.world,
                    self.world * self.config.train.accum_steps,
                )
            per_rank = rng.get("per_rank", [rng])
            own = per_rank[self.rank] if self.rank < len(per_rank) else None
            if not self.main:
                s.window_loss, s.window_nll, s.window_tokens = 0.0, 0.0, 0
        if own is None:
            torch.manual_seed(self.config.train.seed + self.rank)
            return
        torch.set_rng_state(own["torch"])
        if "cuda" in own and self.device.type == "cuda":
            torch.cuda.set_rng_state(own["cuda"])

    # ---- training ----------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _next_batch(self) -> tuple[torch.Tensor, ...]:
        """This rank's batch: of the next `world` batches of the stream, which every rank
        walks alike (and so stays at the same position), rank r takes the r-th."""
        self.batches.skip(self.rank)
        batch = next(self.batches)
        self.batches.skip(self.world - 1 - self.rank)
        return batch

    def _gradient_sync(self, last: bool):
        """DDP averages the gradients over the ranks once an update, in its last backward."""
        if self.ddp is None or last:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer update over `accum_steps` batches (on each rank); returns this
        rank's summed loss, nll, tokens."""
        c = self.config.train
        if c.freeze_embeddings or c.freeze_encoder:
            apply_freezing(self.model, c, self.state.step)
        sampling = mixing_probability(c.scheduled_sampling, self.state.step + 1)
        total_loss = total_nll = total_tokens = 0
        for i in range(c.accum_steps):
            src, tgt_in, tgt_out = (
                t.to(self.device, non_blocking=True) for t in self._next_batch()
            )
            with self._gradient_sync(last=i == c.accum_steps - 1):
                with self._autocast():
                    if sampling > 0:  # scheduled sampling: the decoder reads own predictions
                        # (a pass without gradients: DDP leaves it alone, on every rank)
                        own = first_pass(self.forward, self.model, src, tgt_in)
                        tgt_in = mix_inputs(tgt_in, own, sampling, c.scheduled_sampling.predictions)
                    logits = self.forward(src, tgt_in)
                loss, nll, ntok = label_smoothed_loss(logits, tgt_out, c.label_smoothing)
                # Normalise by this batch's tokens; each of the accum batches weighs the same
                # (and DDP's mean over the ranks makes each of the world x accum batches so).
                self.scaler.scale(loss / ntok.clamp(min=1) / c.accum_steps).backward()
            total_loss, total_nll = total_loss + loss.detach(), total_nll + nll.detach()
            total_tokens = total_tokens + ntok
        norm = None
        if c.clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.clip_norm)
        finite = self._finite(total_loss, total_tokens, norm)
        if finite or self.scaler.is_enabled():  # fp16's scaler skips NaN gradients itself
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if not finite:  # a skipped update counts in no log line
            return tuple(torch.zeros_like(t) for t in (total_loss, total_nll, total_tokens))
        return total_loss, total_nll, total_tokens

    def _finite(self, loss: torch.Tensor, tokens: torch.Tensor, norm: torch.Tensor | None) -> bool:
        """Whether this update's loss, and its gradient norm where clipping computed one
        (fp16 aside: its loss scaler skips non-finite gradients), are finite on every rank
        (one host synchronisation). An update that is not is skipped, with a warning;
        `MAX_NONFINITE_UPDATES` in a row raise `TrainingDiverged`."""
        finite = torch.isfinite(loss)
        if norm is not None and not self.scaler.is_enabled():
            finite = finite & torch.isfinite(norm)
        if not distributed.max_over_ranks(int(not bool(finite))):
            self.nonfinite = 0
            return True
        self.nonfinite += 1
        step, c = self.state.step + 1, self.config.train
        what = f"loss {float(loss) / max(int(tokens), 1):.4g}"
        if norm is not None:
            what += f", gradient norm {float(norm):.4g}"
        if self.nonfinite < MAX_NONFINITE_UPDATES:
            log.warning(
                "step %d: %s: update skipped (%d in a row of %d that stop the run)",
                step,
                what,
                self.nonfinite,
                MAX_NONFINITE_UPDATES,
            )
            return False
        dtype = str(self.amp_dtype).removeprefix("torch.")
        fp32 = f", train.precision=fp32 (now {dtype})" if self.amp_dtype is not None else ""
        raise TrainingDiverged(
            f"{self.run_dir}: training diverged at step {step}: {what}, not finite for "
            f"{self.nonfinite} updates in a row (skipped; no checkpoint written from them): "
            f"try a lower train.lr (now {c.lr:g}){fp32}, or check the training data"
        )

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
        log.info(
            "validation at step %d: %s%s",
            s.step,
            ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in result.items()
                if k not in ("step", "bleu_signature")
            ),
            " (best)" if improved else "",
        )
        self.run_log.append({"type": "valid", **result})
        return c.patience > 0 and s.bad_validations >= c.patience

    def run(self) -> dict[str, Any]:
        with stop_requests() as signals:
            return self._run(signals)

    def _run(self, signals: list[int]) -> dict[str, Any]:
        c, s = self.config.train, self.state
        log.info(
            "model: %s parameters, device %s, precision %s, threads %d%s",
            f"{self.model.num_parameters():,}",
            self.device,
            self.amp_dtype or "fp32",
            torch.get_num_threads(),
            f", {describe_cpu(hardware('cpu'))}" if self.device.type == "cpu" else "",
        )
        if self.device.type == "cpu" and c.precision == "auto" and self.amp_dtype is None:
            log.info("no native bf16 on this CPU: float32 (bf16 is ~1.8x faster where native)")
        log.info(
            "an update: %d batches of at most %d padded tokens (%d processes x %d accumulation "
            "steps)",
            self.world * c.accum_steps,
            c.batch_tokens,
            self.world,
            c.accum_steps,
        )
        self.model.train()
        window_start = time.perf_counter()
        session_start = time.perf_counter()
        elapsed0 = s.elapsed
        stop_reason = "max_steps"
        bar = tqdm(
            total=c.max_steps,
            initial=s.step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=None if self.main else True,
        )
        while s.step < c.max_steps:
            loss, nll, ntok = self.train_step()
            s.step += 1
            acc_loss, acc_nll, acc_tok = self.window
            self.window = (acc_loss + loss, acc_nll + nll, acc_tok + ntok)
            bar.update(1)
            s.elapsed = elapsed0 + time.perf_counter() - session_start
            if s.step % c.log_every == 0:
                now = time.perf_counter()
                self._log_window(now - window_start, bar)
                window_start = now
            # Every rank stops at the same step: at any rank's time budget or signal, or at
            # rank 0's early stopping.
            out_of_time = c.max_minutes > 0 and bool(
                distributed.max_over_ranks(int(s.elapsed >= c.max_minutes * 60))
            )
            stop = False
            if s.step % c.valid_every == 0 or out_of_time or s.step == c.max_steps:
                stop = distributed.on_main(lambda: self._after_validation(self.validate()))
                if stop:
                    stop_reason = f"early stopping (patience {c.patience})"
            if s.step % c.save_every == 0 or out_of_time or stop or s.step == c.max_steps:
                self.save()
                window_start = time.perf_counter()  # don't bill checkpoint time to tok/s
            if out_of_time and not stop:
                stop_reason = f"time budget ({c.max_minutes} min)"
            if out_of_time or stop:
                break
            signum = distributed.max_over_ranks(signals[0] if signals else 0)
            if signum:
                if s.step % c.save_every:
                    self.save(snapshot=False)
                bar.close()
                raise TrainingStopped(signum, s.step, self.run_dir)
        bar.close()
        return self.finish(stop_reason)

    def _window_totals(self) -> tuple[float, float, int]:
        """The log window's sums (loss, nll, target tokens) over all ranks; the only host
        synchronisation of a log interval."""
        loss, nll, tokens = self.window
        if self.world == 1:
            return float(loss), float(nll), int(tokens)
        totals = torch.stack([loss.double(), nll.double(), tokens.double()])
        loss, nll, tokens = distributed.all_reduce_sum(totals).tolist()
        return loss, nll, int(tokens)

    def _log_window(self, seconds: float, bar: tqdm) -> None:
        """Log the window's numbers, summed over the ranks (rank 0 writes), and start anew."""
        c, s = self.config.train, self.state
        loss, nll, tokens = self._window_totals()
        record = {
            "type": "train",
            "step": s.step,
            "epoch": self.batches.epoch,
            "lr": self.scheduler.get_last_lr()[0],
            "loss": loss / tokens,
            "ppl": math.exp(min(nll / tokens, 50.0)),
            "tgt_tokens_per_s": tokens / seconds,
            "tgt_tokens_per_update": tokens / c.log_every,
            "elapsed_s": round(s.elapsed, 1),
        }
        if c.scheduled_sampling.enabled:
            record["sampling_prob"] = mixing_probability(c.scheduled_sampling, s.step)
        s.target_tokens += tokens
        self.window = tuple(torch.zeros_like(t) for t in self.window)
        if not self.main:
            return
        bar.set_postfix(
            loss=f"{record['loss']:.3f}",
            lr=f"{record['lr']:.2e}",
            tok_s=f"{record['tgt_tokens_per_s']:.0f}",
        )
        log.info(
            "step %d | epoch %d | loss %.4f | ppl %.2f | lr %.3e | %.0f tgt tok/s",
            s.step,
            record["epoch"],
            record["loss"],
            record["ppl"],
            record["lr"],
            record["tgt_tokens_per_s"],
        )
        self.run_log.append(record)

    def finish(self, stop_reason: str) -> dict[str, Any]:
        """Rank 0 averages the last checkpoints (if asked) and writes summary.json; every
        rank returns the summary."""
        unlogged = self._window_totals()[2]  # the target tokens of the steps since the last log
        return distributed.on_main(lambda: self._summary(stop_reason, unlogged))

    def _summary(self, stop_reason: str, unlogged_tokens: int) -> dict[str, Any]:
        c, s = self.config.train, self.state
        summary: dict[str, Any] = {
            "nmt_version": __version__,
            "torch_version": str(torch.__version__),
            "stop_reason": stop_reason,
            "steps": s.step,
            "wall_time_s": round(s.elapsed, 1),
            "target_tokens": s.target_tokens + unlogged_tokens,
            "mean_tgt_tokens_per_s": round(
                (s.target_tokens + unlogged_tokens) / max(s.elapsed, 1e-9), 1
            ),
            # The effective batch: per update, over all processes.
            "world_size": self.world,
            "batches_per_update": self.world * c.accum_steps,
            "mean_tgt_tokens_per_update": round(
                (s.target_tokens + unlogged_tokens) / max(s.step, 1), 1
            ),
            "epochs": self.batches.epoch,
            "device": str(self.device),
            "precision": str(self.amp_dtype or "fp32"),
            "threads": torch.get_num_threads(),
            "hardware": hardware(self.device.type),
            "parameters": self.model.num_parameters(),
            "train_pairs": asdict(self.data.train.stats),
            "best_valid_bleu": s.best_bleu,
            "validations": s.validations,
        }
        if self.parent is not None:
            summary["parent"] = self.parent.provenance()
            summary["frozen_parameters"] = sum(p.numel() for p in frozen_parameters(self.model, c))
        if c.average_last > 1:
            averaged, snapshots = self.checkpoints.average(c.average_last)
            self.model.load_state_dict(averaged["model"])
            result = self.validate()
            result["averaged_from"] = [p.name for p in snapshots]
            self.run_log.append({"type": "valid_averaged", **result})
            summary["averaged"] = result
            log.info("averaged %d checkpoints: %s", len(snapshots), result)
            summary["checkpoint"] = self.checkpoints.choose(result, s.best_bleu, s.best_loss)
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary
