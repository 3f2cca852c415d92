"""nmt-evaluate: translate a test set and score it with sacrebleu."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nmt.cli.common import (
    add_decoding_args,
    add_engine_args,
    add_force,
    add_models,
    decoding_from,
    fail,
    setup_logging,
    user_errors,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nmt-evaluate",
        description="Translate a test set and score it with sacrebleu (BLEU, chrF2, signatures).",
    )
    add_models(p, "several -m: an ensemble")
    p.add_argument("--src", required=True, help="source file")
    p.add_argument("--ref", required=True, help="reference file")
    p.add_argument("--output-dir", "-o", required=True, help="writes hyp.txt and scores.json")
    add_force(p, "replace the hyp.txt and scores.json of an evaluation")
    add_decoding_args(p, lengths=False)
    add_engine_args(p)
    return p


def evaluate_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    from nmt.evaluate import evaluate

    try:
        result = evaluate(
            args.model,
            Path(args.src),
            Path(args.ref),
            Path(args.output_dir),
            decoding_from(args),
            threads=args.threads,
            device=args.device,
            use_vmap=not args.no_vmap,
            force=args.force,
        )
    except user_errors() as e:
        return fail(e)
    print(json.dumps(result, indent=2))
    return 0
