"""Thin command-line entry points, one module per command: each `main` parses, loads the
config, calls one library function and prints. `common` holds what they share: logging,
the one-line error, and one definition of each option several commands take.

`COMMANDS` is the registry `python -m nmt <command>` runs; the console scripts of
pyproject.toml name the functions here (`nmt.cli:train_main`, ...).
"""

from __future__ import annotations

from nmt.cli.average import average_main
from nmt.cli.bench import bench_main
from nmt.cli.common import DATA_DIR_HELP
from nmt.cli.distill import distill_main
from nmt.cli.evaluate import evaluate_main
from nmt.cli.export import export_main
from nmt.cli.pipeline import pipeline_main
from nmt.cli.prepare import prepare_main
from nmt.cli.serve import serve_main
from nmt.cli.train import train_main
from nmt.cli.translate import translate_main
from nmt.cli.vmap import vmap_main

__all__ = [
    "COMMANDS",
    "DATA_DIR_HELP",
    "average_main",
    "bench_main",
    "distill_main",
    "evaluate_main",
    "export_main",
    "pipeline_main",
    "prepare_main",
    "serve_main",
    "train_main",
    "translate_main",
    "vmap_main",
]

COMMANDS = {
    "train": train_main,
    "translate": translate_main,
    "average": average_main,
    "evaluate": evaluate_main,
    "export": export_main,
    "bench": bench_main,
    "vmap": vmap_main,
    "distill": distill_main,
    "pipeline": pipeline_main,
    "prepare": prepare_main,
    "serve": serve_main,
}
