"""nmt-prepare: encode training corpora into memory-mapped shards with a manifest."""

from __future__ import annotations

import argparse

from nmt.cli.common import add_data_dir, add_force, fail, setup_logging, user_errors


def _parser() -> argparse.ArgumentParser:
    from nmt.prepare.folder import WORKERS

    p = argparse.ArgumentParser(
        prog="nmt-prepare",
        description="Encode training corpora (line-aligned files, gzip or TSV; several, with "
        "weights) into memory-mapped shards with a manifest. Rerun the same command to resume "
        "an interrupted run: only the missing shards are made.",
    )
    p.add_argument(
        "--config", "-c", required=True, help="what to prepare (YAML); see models/prepare/*.yaml"
    )
    add_data_dir(
        p, "data root: relative corpus paths are found under DIR (replaces prepare.data_dir)"
    )
    p.add_argument("--workers", type=int, default=WORKERS, help="encoding processes")
    add_force(
        p,
        "start over in a folder holding a stale preparation (removes only what "
        "nmt-prepare made there)",
    )
    return p


def prepare_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    from nmt.prepare.folder import load_prepare_run, prepare

    try:
        run = load_prepare_run(args.config, args.data_dir)
        manifest = prepare(
            run.prepare, run.tokenizer, run.output_dir, workers=args.workers, force=args.force
        )
    except user_errors() as e:
        return fail(e)
    print(manifest.summary())
    return 0
