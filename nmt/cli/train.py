"""nmt-train: train a Transformer from a run config."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from nmt import __version__
from nmt.cli.common import (
    add_data_dir,
    add_overrides,
    fail,
    overrides_with_data_dir,
    setup_logging,
    user_errors,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nmt-train", description="Train a Transformer NMT model.")
    p.add_argument("--config", "-c", help="run config (YAML); see models/*.yaml")
    add_overrides(p, "override a config value (repeatable)", metavar="SECTION.KEY=VALUE")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in run_dir from its last checkpoint"
    )
    add_data_dir(p)
    p.add_argument("--version", action="version", version=f"nmt {__version__}")
    return p


def train_main(argv: list[str] | None = None) -> int:
    if argv is None:  # a console run (not a call from Python): use the faster allocator
        from nmt.allocator import reexec_with_tcmalloc

        reexec_with_tcmalloc("train")
    p = _parser()
    args = p.parse_args(argv)
    if not args.config and not args.overrides:
        p.error("--config is needed (a run config YAML such as models/multi30k-small.yaml)")
    setup_logging()
    from nmt.config import load_run_config
    from nmt.training import distributed
    from nmt.training.run import train
    from nmt.training.stopping import TrainingStopped

    main = distributed.is_main()  # under torchrun, rank 0 reports; the others only warn
    if not main:
        logging.getLogger("nmt").setLevel(logging.WARNING)
    try:
        config = load_run_config(args.config, overrides_with_data_dir(args, "data.data_dir"))
        summary = train(config, resume=args.resume)
    except user_errors() as e:
        return fail(e)
    except TrainingStopped as e:
        if main:
            print(f"stopped: {e}", file=sys.stderr)
        return e.exit_code
    if main:
        print(json.dumps({k: v for k, v in summary.items() if k != "validations"}, indent=2))
    return 0
