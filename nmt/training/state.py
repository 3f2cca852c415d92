"""The resume state: what `last.pt` holds besides the weights, optimizer, schedule and data
position. `TrainState` is the run's own (step, time, best scores, log window); each rank adds
its RNG state and log window (`rank_state`), which rank 0 saves for all (`merge_ranks`) and
every rank takes back its own of (`restore_rank`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from nmt.config import TrainConfig
from nmt.training.checkpoints import RunCheckpoints
from nmt.training.runlog import RunLog

log = logging.getLogger(__name__)


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


def resume_point(
    checkpoints: RunCheckpoints, run_log: RunLog, resume: bool
) -> dict[str, Any] | None:
    """Rank 0: `last.pt` to continue from (None for a new run), with `log.jsonl` trimmed
    back to its step."""
    ckpt = checkpoints.resume_state() if resume else None
    run_log.trim(ckpt["train_state"]["step"] if ckpt is not None else 0)
    return ckpt


def rank_state(window: list[float], device: torch.device) -> dict[str, Any]:
    """What a resume needs of this rank besides the shared state: its RNG state and its log
    window's sums (`window`: loss, nll, target tokens)."""
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state()
    return {"rng": rng, "window": window}


def merge_ranks(state: TrainState, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank 0, saving: every rank's `rank_state` into `state` (the windows' totals, and each
    rank's window in a run of several processes); returns the RNG states to save."""
    windows = [r["window"] for r in ranks]
    state.window_loss, state.window_nll, state.window_tokens = (
        sum(column) for column in zip(*windows, strict=True)
    )
    state.rank_windows = windows if len(ranks) > 1 else []
    rng = dict(ranks[0]["rng"])
    if len(ranks) > 1:
        rng["per_rank"] = [r["rng"] for r in ranks]
    return rng


def restore_rank(
    state: TrainState,
    rng: dict[str, Any],
    rank: int,
    world: int,
    c: TrainConfig,
    device: torch.device,
) -> None:
    """This rank's RNG state and log window (into `state`), from the saved `rng`. A run
    resumed by as many processes as saved it replays the uninterrupted one; by another
    number, rank 0 carries the window's totals and ranks beyond the saved ones start a
    fresh RNG stream."""
    saved = len(state.rank_windows) or 1
    own: dict[str, Any] | None = rng
    if saved == world and world > 1:
        own = rng["per_rank"][rank]
        state.window_loss, state.window_nll, state.window_tokens = state.rank_windows[rank]
    elif saved != world:
        if rank == 0:
            log.warning(
                "last.pt was written by %d process(es), resumed by %d: an update takes "
                "%d batches from here on (processes x train.accum_steps), and the run "
                "differs from an uninterrupted one",
                saved,
                world,
                world * c.accum_steps,
            )
        per_rank = rng.get("per_rank", [rng])
        own = per_rank[rank] if rank < len(per_rank) else None
        if rank != 0:
            state.window_loss, state.window_nll, state.window_tokens = 0.0, 0.0, 0
    if own is None:
        torch.manual_seed(c.seed + rank)
        return
    torch.set_rng_state(own["torch"])
    if "cuda" in own and device.type == "cuda":
        torch.cuda.set_rng_state(own["cuda"])
