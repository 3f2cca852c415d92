"""nmt-bench: measure a grid of models x backends x settings and report it."""

from __future__ import annotations

import argparse

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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nmt-bench",
        description="Benchmark a grid of models x backends x settings (BLEU, words/s, latency, "
        "memory), each cell in a fresh process; write results.jsonl, report.md and plots.",
    )
    p.add_argument("--config", "-c", required=True, help="benchmark grid (YAML); see benchmarks/")
    p.add_argument("--output-dir", "-o", help="report folder (default: the grid's output_dir)")
    add_overrides(p, "override a grid value, e.g. repeats=5 or grid.threads=[1,2] (repeatable)")
    add_device(p, default=None, help="measure on this device only")
    add_data_dir(p)
    p.add_argument("--only", metavar="TEXT", help="only the cells whose id contains TEXT")
    add_force(p, "measure again cells already measured")
    p.add_argument("--compare", metavar="OLD.jsonl", help="show what got faster or slower")
    p.add_argument("--report-only", action="store_true", help="rebuild the report, measure nothing")
    p.add_argument("--list", action="store_true", help="print the ids of the cells and exit")
    return p


def bench_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    from nmt.bench.grid import load_bench_config
    from nmt.bench.runner import bench, select_cells

    try:
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
    except user_errors() as e:
        return fail(e)
    print(result.summary())
    return 1 if result.failed else 0  # a script must not take a partial grid for a result
