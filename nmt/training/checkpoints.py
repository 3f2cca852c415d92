"""The checkpoints of one run folder: writing, rotation, resume, averaging and the choice.

- `last.pt`: the full resume state (weights, optimizer, scheduler, RNG, data position and
  the trainer's `TrainState`), rewritten every `save_every` updates;
- `checkpoints/step_N.pt`: weights at step N, the last `keep_last` kept for averaging;
- `best.pt`: the weights of the best validation (dev BLEU, else dev loss);
- `averaged.pt`: the mean of the last `average_last` snapshots, at the end of the run.

Every file is written atomically (`nmt.fileio.atomic_torch_save`), so a run killed at any
moment leaves the previous complete file, and every one carries the run's config, tokenizer
and provenance (`nmt.checkpoint.save_checkpoint`). The trainer decides when; this module
what goes where.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from nmt.checkpoint import CheckpointError, average_checkpoints, load_checkpoint, save_checkpoint
from nmt.fileio import atomic_torch_save
from nmt.model import Transformer
from nmt.tokenizer import Tokenizer
from nmt.training.finetune import Parent

log = logging.getLogger(__name__)

RESUME_KEYS = ("optimizer", "scheduler", "data", "train_state")


class RunCheckpoints:
    """The checkpoint files of the run in `run_dir` (module docstring)."""

    def __init__(
        self,
        run_dir: Path,
        run_config: dict[str, Any],
        tokenizer: Tokenizer,
        parent: Parent | None = None,
        keep_last: int = 0,
    ):
        self.run_dir = Path(run_dir)
        self.run_config = run_config
        self.tokenizer = tokenizer
        self.parent = parent
        self.keep_last = keep_last
        self.last = self.run_dir / "last.pt"

    def _write(self, path: Path, model: Transformer, step: int, **extra: Any) -> None:
        save_checkpoint(
            path,
            model,
            self.run_config,
            self.tokenizer.sha256(),
            tokenizer_model=self.tokenizer.model_proto,
            step=step,
            torch_version=str(torch.__version__),
            **({"parent": self.parent.provenance()} if self.parent is not None else {}),
            **extra,
        )

    def save(self, model: Transformer, step: int, snapshot: bool, **resume_state: Any) -> None:
        """Write `checkpoints/step_N.pt` (unless `snapshot` is false), then `last.pt` with
        `resume_state` (the `RESUME_KEYS`, `rng`, `scaler`), then drop the snapshots beyond
        `keep_last`. A failed write (a full disk) is a `CheckpointError` naming the file;
        the previous `last.pt` stays intact."""
        try:
            if snapshot:
                self._write(self.run_dir / "checkpoints" / f"step_{step}.pt", model, step)
            self._write(self.last, model, step, **resume_state)
        except OSError as e:
            raise CheckpointError(
                f"{e.filename or self.run_dir}: cannot write checkpoint "
                f"({e.strerror or e}); {self.last} holds the previous "
                "checkpoint: make room, then continue with --resume"
            ) from e
        for old in self.snapshots()[: -self.keep_last or None]:
            old.unlink(missing_ok=True)

    def save_best(self, model: Transformer, step: int, validation: dict[str, Any]) -> None:
        self._write(self.run_dir / "best.pt", model, step, validation=validation)

    def snapshots(self) -> list[Path]:
        """The `checkpoints/step_N.pt` on disk, oldest first."""
        return sorted(
            (self.run_dir / "checkpoints").glob("step_*.pt"),
            key=lambda p: int(p.stem.split("_")[1]),
        )

    def resume_state(self) -> dict[str, Any] | None:
        """`last.pt` to continue from, or None when there is none yet."""
        if not self.last.exists():
            return None
        ckpt = load_checkpoint(self.last)
        missing = [k for k in RESUME_KEYS if k not in ckpt]
        if missing:
            raise CheckpointError(f"{self.last}: not a resume state (no {', '.join(missing)})")
        return ckpt

    def average(self, last_n: int) -> tuple[dict[str, Any], list[Path]]:
        """Average the last `last_n` snapshots into `averaged.pt`; the averaged checkpoint
        and the snapshots it came from."""
        snapshots = self.snapshots()[-last_n:]
        averaged = average_checkpoints(snapshots)
        atomic_torch_save(averaged, self.run_dir / "averaged.pt")
        return averaged, snapshots

    def choose(self, averaged: dict[str, Any], best_bleu: float, best_loss: float) -> str:
        """The run's model: `averaged.pt`, unless its validation `averaged` does worse on dev
        than best.pt's, by the measure best.pt was chosen by (BLEU, else loss): snapshots
        taken while the model still improved fast average to a worse model."""
        if "valid_bleu" in averaged:
            measure, ours, best = "BLEU", averaged["valid_bleu"], best_bleu
            worse = ours < best
        else:
            measure, ours, best = "loss", averaged["valid_loss"], best_loss
            worse = ours > best
        if worse and (self.run_dir / "best.pt").is_file():
            log.warning(
                "the averaged model's dev %s is %.4g, worse than best.pt's %.4g: best.pt is "
                "the run's model (summary.json: checkpoint)",
                measure,
                ours,
                best,
            )
            return "best.pt"
        return "averaged.pt"
