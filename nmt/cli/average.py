"""nmt-average: average the weights of a run's checkpoints into one checkpoint."""

from __future__ import annotations

import argparse

from nmt.cli.common import add_force, fail, setup_logging, user_errors


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nmt-average", description="Average checkpoint weights.")
    p.add_argument("checkpoints", nargs="+", help="checkpoints of one run")
    p.add_argument("--output", "-o", required=True, help="averaged checkpoint to create")
    add_force(p, "replace an averaged checkpoint made before")
    return p


def average_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    from nmt.checkpoint import write_average

    try:
        write_average(args.checkpoints, args.output, force=args.force)
    except user_errors() as e:
        return fail(e)
    return 0
