"""nmt-vmap: a CTranslate2 vocabulary map from a parallel corpus."""

from __future__ import annotations

import argparse

from nmt.cli.common import (
    add_data_dir,
    add_force,
    add_languages,
    fail,
    setup_logging,
    user_errors,
)


def _parser() -> argparse.ArgumentParser:
    from nmt.data.datasets import DATASETS
    from nmt.vmap import FREQUENT, IBM1_ITERATIONS, SCORERS, TOP_K

    p = argparse.ArgumentParser(
        prog="nmt-vmap",
        description="Build a CTranslate2 vocabulary map from a parallel corpus "
        "(ship it with nmt-export --vmap).",
    )
    tok = p.add_mutually_exclusive_group(required=True)
    tok.add_argument("--model", "-m", help="run folder, checkpoint or export: its tokenizer")
    tok.add_argument("--spm", help="SentencePiece model file")
    p.add_argument("--src", help="source side of a parallel corpus")
    p.add_argument("--tgt", help="target side, line-aligned with --src")
    p.add_argument("--data", choices=sorted(DATASETS), help="a registered dataset instead")
    add_data_dir(p)
    p.add_argument("--split", default="train", help="with --data: which files (default train)")
    add_languages(p)
    p.add_argument("--output", "-o", required=True, help="vmap file (and OUTPUT.json, its info)")
    p.add_argument("--top-k", type=int, default=TOP_K, help="targets per source piece")
    p.add_argument(
        "--frequent", type=int, default=FREQUENT, help="most frequent target pieces always allowed"
    )
    p.add_argument("--min-prob", type=float, default=0.0, help="drop targets with p(t|s) below")
    p.add_argument("--method", default="ibm1", choices=sorted(SCORERS))
    p.add_argument("--iterations", type=int, default=IBM1_ITERATIONS, help="IBM-1 EM rounds")
    add_force(p, "replace an existing output file")
    return p


def _make_vmap(args: argparse.Namespace) -> None:
    from nmt.data.datasets import get_file
    from nmt.outputs import claim
    from nmt.tokenizer import Tokenizer
    from nmt.vmap import VMAP, build_vmap_from_files, tokenizer_from, write_vmap

    src, tgt = args.src, args.tgt
    if args.data:
        src = get_file(args.data, f"{args.split}.{args.src_lang}", args.data_dir)
        tgt = get_file(args.data, f"{args.split}.{args.tgt_lang}", args.data_dir)
    inputs = [src, tgt, args.spm, args.model]
    claim(args.output, VMAP, inputs=inputs, force=args.force, folder=False)  # fail early
    tokenizer = Tokenizer.from_file(args.spm) if args.spm else tokenizer_from(args.model)
    vmap = build_vmap_from_files(
        src,
        tgt,
        tokenizer,
        top_k=args.top_k,
        frequent=args.frequent,
        min_prob=args.min_prob,
        method=args.method,
        iterations=args.iterations,
    )
    write_vmap(vmap, args.output, inputs=inputs, force=args.force)


def vmap_main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.data:
        if args.src or args.tgt:
            p.error("--data excludes --src/--tgt")
    elif not (args.src and args.tgt):
        p.error("give --src and --tgt, or --data")
    setup_logging()
    try:
        _make_vmap(args)
    except (*user_errors(), FileExistsError) as e:
        return fail(e)
    print(args.output)
    return 0
