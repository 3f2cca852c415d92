"""nmt-translate: one line out per line in, with any backend (stdin/stdout by default)."""

from __future__ import annotations

import argparse

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
    from nmt.translate import BACKENDS, MAX_LINE_CHARS

    p = argparse.ArgumentParser(
        prog="nmt-translate",
        description="Translate text, one line in, "
        "one line out (stdin/stdout when no files are given).",
    )
    add_models(p, "run folder, checkpoint or export; several -m: an ensemble of PyTorch models")
    p.add_argument("--input", "-i", help="input file (default: stdin)")
    p.add_argument("--output", "-o", help="output file (default: stdout)")
    add_force(p, "replace an output file nmt-translate wrote before")
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS])
    add_decoding_args(p)
    add_engine_args(p)
    p.add_argument(
        "--inter-threads", type=int, default=1, help="CTranslate2: batches translated in parallel"
    )
    p.add_argument(
        "--compute-type",
        default="default",
        help="CTranslate2: int8, int8_float16, float16, float32, ... (default: as exported)",
    )
    p.add_argument(
        "--max-line-chars",
        type=int,
        default=MAX_LINE_CHARS,
        help="refuse an input line longer than this many characters (0: no limit); "
        "with -o nothing is written",
    )
    p.add_argument(
        "--exact-length-limits",
        action="store_true",
        help="CTranslate2 beam search: apply each sentence's own length limit exactly "
        "(as PyTorch does) at the price of smaller batches",
    )
    return p


def translate_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    from nmt.outputs import claim
    from nmt.translate import load, translate_file

    errors = user_errors()  # imported now: once memory runs out, an import can fail
    output = None
    try:
        if args.output:
            inputs = [args.input, *args.model]
            output = claim(
                args.output, "nmt-translate", inputs=inputs, force=args.force, folder=False
            )
        decoding = decoding_from(args)  # impossible options fail here, before the model loads
        translator = load(
            args.model,
            backend=args.backend,
            device=args.device,
            threads=args.threads,
            inter_threads=args.inter_threads,
            compute_type=args.compute_type,
            exact_length_limits=args.exact_length_limits,
        )
    except errors as e:
        return fail(e)
    ct2 = getattr(translator, "backend", "") == "ctranslate2"
    extra = {"use_vmap": False} if args.no_vmap and ct2 else {}
    try:
        translate_file(translator, args.input, output, decoding, args.max_line_chars, **extra)
    except (OSError, ValueError, MemoryError) as e:  # unreadable input, full disk, line too long
        return fail(e)
    return 0
