"""The run folder as training opens it: rank 0 checks it may train there, writes
`config.yaml`, starts `train.log` and finds the run's tokenizer; the other ranks receive
the tokenizer and never touch the folder (which need not be shared)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import yaml

from nmt.config import ConfigError, RunConfig
from nmt.fileio import atomic_write_text, remove_stale_temporaries
from nmt.outputs import append_log, ensure_folder
from nmt.tokenizer import Tokenizer
from nmt.training import distributed
from nmt.training.data import run_tokenizer
from nmt.training.finetune import Parent

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def open_run(
    config: RunConfig, resume: bool, parent: Parent | None, cleanup: contextlib.ExitStack
) -> Tokenizer:
    """The run's tokenizer, once rank 0 has prepared the run folder (`prepare_run_dir`)
    and started copying the `nmt` log into its `train.log` until `cleanup` closes."""
    run_dir = Path(config.run_dir)
    found: list[Tokenizer] = []

    def prepare() -> tuple[bytes, str]:
        prepare_run_dir(config, resume)
        cleanup.enter_context(train_log(run_dir / "train.log"))
        found.append(run_tokenizer(config, run_dir, parent))
        return found[0].model_proto, found[0].source

    proto, source = distributed.on_main(prepare)
    return found[0] if found else Tokenizer(proto, source)


def prepare_run_dir(config: RunConfig, resume: bool) -> None:
    """Refuse a folder holding a run unless resuming it, and a resume that changes the
    model's shape; make `checkpoints/`, drop stale temporary files, write `config.yaml`."""
    run_dir = Path(config.run_dir)
    if (run_dir / "last.pt").exists() and not resume:
        raise ConfigError(
            f"{run_dir}: run folder already holds a training run "
            "(last.pt); pass --resume to continue it or choose another run_dir"
        )
    ensure_folder(run_dir / "checkpoints")
    for folder in (run_dir, run_dir / "checkpoints"):
        remove_stale_temporaries(folder)
    config_path = run_dir / "config.yaml"
    if resume and config_path.exists():
        saved = yaml.safe_load(config_path.read_text())
        if saved.get("model") and {
            k: v for k, v in saved["model"].items() if k != "vocab_size"
        } != {k: v for k, v in asdict(config.model).items() if k != "vocab_size"}:
            raise ConfigError(
                f"{config_path}: model section differs from the config "
                "given to --resume; a run cannot change its architecture"
            )
    atomic_write_text(config_path, yaml.safe_dump(config.to_dict(), sort_keys=False))


@contextlib.contextmanager
def train_log(path: Path) -> Iterator[None]:
    """Copy the `nmt` logger's records into `path` (appended to, never through a link)
    while the context lasts; the handler is removed and closed however it ends, so that
    what runs next does not write into this run's log."""
    handler = append_log(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("nmt")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
