"""What a run tells as it goes and at its end: the set-up lines, the log window (one
`log.jsonl` record and one log line every `train.log_every` updates, summed over the
ranks), the validation lines, and `summary.json`'s figures."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from typing import Any

import torch
from tqdm import tqdm

from nmt import __version__
from nmt.config import TrainConfig
from nmt.data.corpus import FilterStats
from nmt.machine import describe_cpu, hardware
from nmt.model import Transformer
from nmt.training import distributed
from nmt.training.finetune import Parent, frozen_parameters
from nmt.training.runlog import RunLog
from nmt.training.sampling import mixing_probability
from nmt.training.state import TrainState

log = logging.getLogger(__name__)


class LogWindow:
    """The sums of this rank's updates since the last log line (loss, nll, target tokens),
    as tensors on the device: one host synchronisation a log line. A resumed run starts
    from the sums saved in its `TrainState`."""

    def __init__(self, state: TrainState, device: torch.device, world: int):
        self.world = world
        self.sums = (
            torch.tensor(state.window_loss, dtype=torch.float32, device=device),
            torch.tensor(state.window_nll, dtype=torch.float32, device=device),
            torch.tensor(state.window_tokens, dtype=torch.int64, device=device),
        )
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, nll: torch.Tensor, tokens: torch.Tensor) -> None:
        acc_loss, acc_nll, acc_tok = self.sums
        self.sums = (acc_loss + loss, acc_nll + nll, acc_tok + tokens)

    def restart_clock(self) -> None:
        """Time the window from now (checkpoint time is not billed to tokens/s)."""
        self.started = time.perf_counter()

    def rank_sums(self) -> list[float]:
        """This rank's sums, for `last.pt`."""
        loss, nll, tokens = self.sums
        return [float(loss), float(nll), int(tokens)]

    def totals(self) -> tuple[float, float, int]:
        """The sums over all ranks (every rank calls it)."""
        loss, nll, tokens = self.sums
        if self.world == 1:
            return float(loss), float(nll), int(tokens)
        totals = torch.stack([loss.double(), nll.double(), tokens.double()])
        loss, nll, tokens = distributed.all_reduce_sum(totals).tolist()
        return loss, nll, int(tokens)

    def take(self) -> tuple[float, float, int, float]:
        """The totals and the seconds the window lasted; the window starts anew."""
        loss, nll, tokens = self.totals()
        now = time.perf_counter()
        seconds, self.started = now - self.started, now
        self.sums = tuple(torch.zeros_like(t) for t in self.sums)
        return loss, nll, tokens, seconds


def train_record(
    c: TrainConfig, s: TrainState, window: tuple[float, float, int, float], epoch: int, lr: float
) -> dict[str, Any]:
    """The `log.jsonl` record of a log window (`LogWindow.take`) ending at step `s.step`."""
    loss, nll, tokens, seconds = window
    record = {
        "type": "train",
        "step": s.step,
        "epoch": epoch,
        "lr": lr,
        "loss": loss / tokens,
        "ppl": math.exp(min(nll / tokens, 50.0)),
        "tgt_tokens_per_s": tokens / seconds,
        "tgt_tokens_per_update": tokens / c.log_every,
        "elapsed_s": round(s.elapsed, 1),
    }
    if c.scheduled_sampling.enabled:
        record["sampling_prob"] = mixing_probability(c.scheduled_sampling, s.step)
    return record


def show_train_record(
    record: dict[str, Any], bar: tqdm, run_log: RunLog, max_steps: int = 0
) -> None:
    """Rank 0: a log window on the progress bar, in the log (with the time left at this
    window's speed, validations aside: a log line is all a console shows under torchrun)
    and in `log.jsonl`."""
    bar.set_postfix(
        loss=f"{record['loss']:.3f}",
        lr=f"{record['lr']:.2e}",
        tok_s=f"{record['tgt_tokens_per_s']:.0f}",
    )
    seconds_per_update = record["tgt_tokens_per_update"] / max(record["tgt_tokens_per_s"], 1e-9)
    left = max(max_steps - record["step"], 0) * seconds_per_update
    padding = (
        f" | pad {record['src_padding']:.0%}/{record['tgt_padding']:.0%}"
        if "src_padding" in record
        else ""
    )
    log.info(
        "step %d%s | epoch %d | loss %.4f | ppl %.2f | lr %.3e | %.0f tgt tok/s%s%s",
        record["step"],
        f"/{max_steps}" if max_steps else "",
        record["epoch"],
        record["loss"],
        record["ppl"],
        record["lr"],
        record["tgt_tokens_per_s"],
        padding,
        f" | ETA {_duration(left)}" if max_steps else "",
    )
    run_log.append(record)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def log_start(
    model: Transformer,
    c: TrainConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    world: int,
) -> None:
    """The run's set-up: model size, device, precision, threads, the effective batch."""
    cpu = hardware("cpu")
    log.info(
        "model: %s parameters, device %s, precision %s, threads %d%s",
        f"{model.num_parameters():,}",
        device,
        amp_dtype or "fp32",
        torch.get_num_threads(),
        f", {describe_cpu(cpu)}, allocator {cpu['allocator']}" if device.type == "cpu" else "",
    )
    if device.type == "cpu" and c.precision == "auto" and amp_dtype is None:
        log.info("no native bf16 on this CPU: float32 (bf16 is ~1.8x faster where native)")
    log.info(
        "an update: %d batches of at most %d padded tokens (%d processes x %d accumulation steps)",
        world * c.accum_steps,
        c.batch_tokens,
        world,
        c.accum_steps,
    )


def log_validation(step: int, result: dict[str, Any], improved: bool) -> None:
    log.info(
        "validation at step %d: %s%s",
        step,
        ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in result.items()
            if k not in ("step", "bleu_signature")
        ),
        " (best)" if improved else "",
    )


def run_summary(
    c: TrainConfig,
    s: TrainState,
    stop_reason: str,
    unlogged_tokens: int,
    *,
    model: Transformer,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    world: int,
    epochs: int,
    train_stats: FilterStats,
    parent: Parent | None,
) -> dict[str, Any]:
    """`summary.json` of a finished run (but for the averaged checkpoint's figures):
    versions, why it stopped, its steps, time, tokens and speed, its hardware and
    validations. `unlogged_tokens`: the target tokens since the last log line."""
    tokens = s.target_tokens + unlogged_tokens
    summary: dict[str, Any] = {
        "nmt_version": __version__,
        "torch_version": str(torch.__version__),
        "stop_reason": stop_reason,
        "steps": s.step,
        "wall_time_s": round(s.elapsed, 1),
        "target_tokens": tokens,
        "mean_tgt_tokens_per_s": round(tokens / max(s.elapsed, 1e-9), 1),
        # The effective batch: per update, over all processes.
        "world_size": world,
        "batches_per_update": world * c.accum_steps,
        "mean_tgt_tokens_per_update": round(tokens / max(s.step, 1), 1),
        "epochs": epochs,
        "device": str(device),
        "precision": str(amp_dtype or "fp32"),
        "threads": torch.get_num_threads(),
        "hardware": hardware(device.type),
        "parameters": model.num_parameters(),
        "train_pairs": asdict(train_stats),
        "best_valid_bleu": s.best_bleu,
        "validations": s.validations,
    }
    if parent is not None:
        summary["parent"] = parent.provenance()
        summary["frozen_parameters"] = sum(p.numel() for p in frozen_parameters(model, c))
    return summary
