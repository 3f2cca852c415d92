"""nmt-bench: measure a grid of models x backends x settings and report it; with --choose,
write deploy.json, the runtime that meets a criterion (`nmt.bench.choose`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nmt.cli.common import (
    add_data_dir,
    add_device,
    add_force,
    add_overrides,
    fail,
    overrides_with_data_dir,
    setup_logging,
    user_errors,
)

if TYPE_CHECKING:
    from nmt.bench.choose import Criterion


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nmt-bench",
        description="Benchmark a grid of models x backends x settings (BLEU, words/s, latency, "
        "memory), each cell in a fresh process; write results.jsonl, report.md and plots.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", "-c", help="benchmark grid (YAML); see benchmarks/")
    source.add_argument(
        "--results",
        metavar="FILE",
        help="with --choose: choose from this results.jsonl alone (no grid, nothing measured)",
    )
    p.add_argument("--output-dir", "-o", help="report folder (default: the grid's output_dir)")
    add_overrides(p, "override a grid value, e.g. repeats=5 or grid.threads=[1,2] (repeatable)")
    add_device(p, default=None, help="measure (and --choose) on this device only")
    add_data_dir(p)
    p.add_argument("--only", metavar="TEXT", help="only the cells whose id contains TEXT")
    add_force(p, "measure again cells already measured; replace a deploy.json of --choose")
    p.add_argument("--compare", metavar="OLD.jsonl", help="show what got faster or slower")
    p.add_argument("--report-only", action="store_true", help="rebuild the report, measure nothing")
    p.add_argument("--list", action="store_true", help="print the ids of the cells and exit")
    p.add_argument(
        "--choose",
        metavar="CRITERION",
        help="write deploy.json (into the output folder) for the measured cell that meets "
        'CRITERION, e.g. "p90<=20ms" or "max words/s at bleu>=35" (docs/benchmarks.md)',
    )
    return p


def bench_main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.results and not args.choose:
        parser.error("--results FILE is read by --choose only")
    setup_logging()
    try:
        return _main(args)
    except user_errors() as e:
        return fail(e)


def _main(args: argparse.Namespace) -> int:
    from nmt.bench.choose import parse_criterion
    from nmt.bench.grid import load_bench_config
    from nmt.bench.records import RESULTS_FILE
    from nmt.bench.runner import bench, select_cells

    criterion = parse_criterion(args.choose) if args.choose else None  # before any measuring
    failed = False
    if args.results:
        results = Path(args.results)
        out = Path(args.output_dir or results.parent)
    else:
        config = load_bench_config(args.config, overrides_with_data_dir(args, "data_dir"))
        if args.list:
            print("\n".join(c.cell_id for c in select_cells(config, args.device, args.only)))
            return 0
        result = bench(
            config,
            args.output_dir,
            device=args.device,
            force=args.force,
            only=args.only,
            compare=args.compare,
            measure=not args.report_only,
        )
        print(result.summary())
        failed, out = bool(result.failed), result.output_dir
        results = out / RESULTS_FILE
    if criterion:
        _choose(args, criterion, results, out)
    return 1 if failed else 0  # a script must not take a partial grid for a result


def _choose(args: argparse.Namespace, criterion: Criterion, results: Path, out: Path) -> None:
    """Write OUT/deploy.json for the cell of `results` that meets `criterion`."""
    from nmt.bench.choose import DEPLOY_FILE, choose_runtime

    profile = choose_runtime(
        results,
        criterion,
        out / DEPLOY_FILE,
        force=args.force,
        device=args.device,
        only=args.only,
        grid=Path(args.config).resolve() if args.config else "",
    )
    print(f"chose {profile.summary()}\nwrote {out / DEPLOY_FILE}")
