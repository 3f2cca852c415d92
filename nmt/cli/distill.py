"""nmt-distill: a teacher translates a training corpus into a distilled dataset folder."""

from __future__ import annotations

import argparse

from nmt.cli.common import (
    add_batch_tokens,
    add_beam,
    add_data_dir,
    add_force,
    add_foreign_args,
    add_guard_args,
    add_languages,
    add_overrides,
    add_threads,
    fail,
    foreign_options,
    guards_from,
    setup_logging,
    user_errors,
)


def _parser() -> argparse.ArgumentParser:
    from nmt.config import DataConfig
    from nmt.data.datasets import DATASETS
    from nmt.decoding import Decoding
    from nmt.distill import DistillConfig
    from nmt.distill.config import BATCH_TOKENS, SELECT

    p = argparse.ArgumentParser(
        prog="nmt-distill",
        description="Sequence-level distillation: a teacher translates the source side of a "
        "training corpus; writes the filtered distilled corpus as a dataset folder, with its "
        "statistics and provenance. Rerun the same command to resume an interrupted run.",
    )
    p.add_argument(
        "--teacher",
        "-t",
        required=True,
        action="append",
        help="run folder, .pt checkpoint, CTranslate2 or ONNX export (CTranslate2 int8: "
        "fastest), or a model nmt did not make: a CTranslate2 folder (OPUS-MT), an Argos "
        "package, a Hugging Face seq2seq folder (converted once, cached); several "
        "--teacher: an ensemble of PyTorch models",
    )
    p.add_argument(
        "--data",
        required=True,
        help=f"registered dataset ({', '.join(DATASETS)}) or a folder of TRAIN.SRC/TRAIN.TGT files",
    )
    add_data_dir(p)
    p.add_argument("--output", "-o", required=True, help="distilled dataset folder to write")
    add_beam(p, Decoding.beam_size, "teacher beam size")
    p.add_argument(
        "--workers", type=int, default=DistillConfig.workers, help="translator processes"
    )
    add_threads(p, DistillConfig.threads, "threads per translator")
    add_batch_tokens(p, BATCH_TOKENS, "source tokens per batch")
    add_guard_args(p)
    p.add_argument("--max-lines", type=int, default=0, help="distil the first N lines only")
    p.add_argument("--mix", action="store_true", help="also write mix.*: original + distilled")
    p.add_argument(
        "--nbest",
        type=int,
        default=DistillConfig.nbest,
        metavar="N",
        help="the teacher's N best translations of each line (N <= --beam), see --select",
    )
    p.add_argument(
        "--select",
        choices=SELECT,
        default=DistillConfig.select,
        help="with --nbest: every different hypothesis becomes a pair (all), or the one "
        "closest to the reference by sentence chrF (closest: Kim & Rush's seq-inter)",
    )
    p.add_argument(
        "--shard",
        metavar="K/N",
        default="",
        help="translate only chunks K, K+N, ... into OUTPUT/shards/K-of-N (one per machine)",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="finish from the shards' chunks only: translate nothing, name what is missing",
    )
    add_languages(p)
    p.add_argument("--train", default=DataConfig.train, help="split (file prefix) to distil")
    p.add_argument("--valid", default=DataConfig.valid, help="split copied beside the output")
    p.add_argument("--test", default=DataConfig.test, help="split copied beside the output")
    add_overrides(
        p, "any other setting, e.g. filters.max_ratio=3 or compute_type=int8 (repeatable)"
    )
    add_foreign_args(p)
    add_force(p, "start over in a folder holding another distillation")
    return p


def distill_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    from nmt.distill import DistillError, distill, load_distill_config, source_data

    flags = {
        "decoding": {
            "beam_size": args.beam,
            "max_batch_tokens": args.batch_tokens,
            **guards_from(args),
        },
        "workers": args.workers,
        "threads": args.threads,
        "max_lines": args.max_lines,
        "mix": args.mix,
        "nbest": args.nbest,
        "select": args.select,
        "shard": args.shard,
        **foreign_options(args),
    }
    try:
        config = load_distill_config(None, args.overrides, flags)
        data = source_data(
            args.data,
            args.data_dir or "",
            args.src_lang,
            args.tgt_lang,
            args.train,
            args.valid,
            args.test,
        )
        teacher = args.teacher if len(args.teacher) > 1 else args.teacher[0]
        result = distill(teacher, data, args.output, config, force=args.force, merge=args.merge)
    except (*user_errors(), DistillError) as e:
        return fail(e)
    print(result.summary())
    return 0
