"""nmt-pipeline: teacher, distillation, student, export and benchmark in one command."""

from __future__ import annotations

import argparse
import sys

from nmt.cli.common import (
    add_data_dir,
    add_overrides,
    fail,
    overrides_with_data_dir,
    setup_logging,
    user_errors,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nmt-pipeline",
        description="Teacher training, distillation, student training, export and benchmark in "
        "one command. Finished stages are skipped; an interrupted one resumes.",
    )
    p.add_argument("config", help="pipeline (YAML); see pipelines/*.yaml")
    add_overrides(
        p, "override a pipeline value, e.g. distill.workers=1 or root=runs/x (repeatable)"
    )
    add_data_dir(p)
    p.add_argument("--until", metavar="STAGE", help="stop after this stage (names: --list)")
    p.add_argument("--list", action="store_true", help="print the stages and which are done")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print the estimated duration of the stages not done (a speed probe of some "
        "seconds; a run prints it first) and exit",
    )
    return p


def pipeline_main(argv: list[str] | None = None) -> int:
    if argv is None:  # a console run: train under the faster allocator (see train_main)
        from nmt.allocator import reexec_with_tcmalloc

        reexec_with_tcmalloc("pipeline")
    args = _parser().parse_args(argv)
    setup_logging()
    from nmt.distill import DistillError
    from nmt.export.folder import ExportError
    from nmt.pipeline import (
        PipelineError,
        estimate_pipeline,
        load_pipeline_config,
        report,
        run_pipeline,
        stage_status,
    )
    from nmt.pipeline.estimate import busy_cpus
    from nmt.training.stopping import TrainingStopped

    try:
        config = load_pipeline_config(args.config, overrides_with_data_dir(args, "data_dir"))
        if args.list:
            for name, done in stage_status(config):
                print(f"{'done' if done else 'to do'}\t{name}")
            return 0
        if args.estimate:
            load = busy_cpus()
            print(report(estimate_pipeline(config), load))
            return 0
        result = run_pipeline(config, until=args.until)
    except (*user_errors(), PipelineError, DistillError, ExportError) as e:
        return fail(e)
    except TrainingStopped as e:
        print(f"stopped: {e}; run the pipeline again to continue", file=sys.stderr)
        return e.exit_code
    print(result.summary())
    return 1 if result.incomplete else 0
