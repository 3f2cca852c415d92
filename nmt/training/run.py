"""`train(config)`: what `nmt-train` runs. It checks the run's inputs, claims its folder
(`nmt.outputs`), takes the folder's lock and hands over to the `Trainer`; started by
torchrun, every process calls it."""

from __future__ import annotations

import contextlib
import gc
from pathlib import Path
from typing import Any

from nmt.config import RunConfig, replace
from nmt.data.corpus import CorpusError
from nmt.data.datasets import split_paths
from nmt.outputs import FolderLock, claim
from nmt.training import distributed
from nmt.training.finetune import parent_checkpoint
from nmt.training.trainer import Trainer


def train(config: RunConfig, resume: bool = False) -> dict[str, Any]:
    """Train (or with `resume`, continue) the run of `config` in its `run_dir`, which one
    process at a time may write: a second `train` on it fails at once, naming the first's PID.
    Nothing is created before the corpus files and the parent (`train.init_from`) are found.

    Started by torchrun, every process calls this and joins the process group (a no-op
    otherwise); every rank needs the corpus, rank 0 alone the parent and the run folder,
    whose lock it takes."""
    with distributed.process_group(config.train.device):
        if config.data.prepared.endswith((".yaml", ".yml")):
            config = _prepared_first(config)
        for split in (
            (config.data.valid,) if config.data.prepared else (config.data.train, config.data.valid)
        ):
            for path in split_paths(config.data, split):
                if not path.is_file():
                    raise CorpusError(f"{path}: file not found (data.{_split_key(config, split)})")
        main = distributed.is_main()
        if config.train.init_from and main:
            parent_checkpoint(config.train.init_from)
        if main:
            claim(config.run_dir, "nmt-train", inputs=_inputs(config), resumable=True).make()
        lock = FolderLock(config.run_dir, "nmt-train") if main else contextlib.nullcontext()
        with lock, Trainer(config, resume=resume) as trainer:  # its train.log ends with it
            summary = trainer.run()
        # The model (DDP's reducer holds the process group) goes before the group does: a
        # group destroyed under a live reducer can abort the process at exit (SIGABRT,
        # "terminate called without an active exception"); collected now, should a
        # reference cycle still hold it.
        del trainer
        gc.collect()
        return summary


def _inputs(config: RunConfig) -> list[Path | str]:
    """What the run reads, which its folder may not be, hold or lie inside."""
    d = config.data
    splits = (d.valid,) if d.prepared else (d.train, d.valid)  # found already (`train`)
    files = [path for split in splits for path in split_paths(d, split)]
    return [*files, d.prepared, config.train.init_from]


def _prepared_first(config: RunConfig) -> RunConfig:
    """`data.prepared` naming an nmt-prepare config: rank 0 prepares its folder when it is
    missing or stale (the others wait), and the run reads that folder."""
    from nmt.prepare.folder import ensure_prepared

    folder = distributed.on_main(
        lambda: str(ensure_prepared(config.data.prepared, config.data.data_dir or None))
    )
    return replace(config, data=replace(config.data, prepared=folder))


def _split_key(config: RunConfig, split: str) -> str:
    return "train" if split == config.data.train else "valid"
