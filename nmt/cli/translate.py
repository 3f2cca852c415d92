"""nmt-translate: one line out per line in, with any backend (stdin/stdout by default).

With --profile deploy.json (written by `nmt-bench --choose`), the profile's model, backend,
compute type, vocabulary map, threads, inter-threads, batch size and decoding are the
defaults: a flag given on the command line overrides its value. A foreign model's tokenizer
and prefixes in the profile go with its model (not with another given by -m).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import TYPE_CHECKING

from nmt.cli.common import (
    add_decoding_args,
    add_engine_args,
    add_force,
    add_foreign_args,
    add_models,
    decoding_from,
    fail,
    foreign_options,
    setup_logging,
    user_errors,
)
from nmt.decoding import Decoding

if TYPE_CHECKING:
    from nmt.bench.choose import Profile

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    from nmt.translate import BACKENDS, MAX_LINE_CHARS

    p = argparse.ArgumentParser(
        prog="nmt-translate",
        description="Translate text, one line in, "
        "one line out (stdin/stdout when no files are given).",
    )
    add_models(
        p,
        "run folder, checkpoint or export, or a model nmt did not make: a CTranslate2 "
        "folder, an Argos package, a Hugging Face seq2seq folder (converted once, cached); "
        "several -m: an ensemble of PyTorch models (or the model of --profile)",
        required=False,
    )
    p.add_argument(
        "--profile",
        metavar="deploy.json",
        help="run what nmt-bench --choose chose: its model (with a foreign model's "
        "tokenizer and prefixes), backend, compute type, vmap, threads and decoding (the "
        "flags given here override them)",
    )
    p.add_argument("--input", "-i", help="input file (default: stdin)")
    p.add_argument("--output", "-o", help="output file (default: stdout)")
    add_force(p, "replace an output file nmt-translate wrote before")
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS])
    add_decoding_args(p)
    add_engine_args(p)
    add_foreign_args(p)
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


# Decoding's fields under their option names here (the others: the field's own name).
_OPTION = {"beam_size": "beam", "max_batch_tokens": "batch_tokens"}
_FIELDS = dataclasses.fields(Decoding)


def _profile_defaults(profile: Profile) -> dict[str, object]:
    """The options' defaults a profile gives (its model is `_parse`'s: -m appends)."""
    return {
        **{_OPTION.get(f.name, f.name): getattr(profile.decoding, f.name) for f in _FIELDS},
        "backend": profile.backend,
        "compute_type": profile.compute_type if profile.backend == "ctranslate2" else "default",
        "device": profile.device,
        "threads": profile.threads,
        "inter_threads": profile.inter_threads,
        "no_vmap": profile.use_vmap is False,
    }


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, Profile | None]:
    """(the options, the profile or None); the options' defaults are the profile's."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.profile:
        if not args.model:
            parser.error("the following arguments are required: --model/-m (or --profile)")
        return args, None
    from nmt.bench.choose import check_machine, load_profile

    profile = load_profile(args.profile)
    parser.set_defaults(**_profile_defaults(profile))
    args = parser.parse_args(argv)
    if not args.model:  # the profile's model, loaded as it was measured unless flags say
        args.model = profile.models
        vars(args).update(profile.load_options() | foreign_options(args))
    check_machine(profile, args.profile)
    if profile.backend == "pytorch" and profile.compute_type != "float32":
        log.warning(
            "%s: nmt-translate runs PyTorch models in float32, not %s",
            args.profile,
            profile.compute_type,
        )
    return args, profile


def _decoding(args: argparse.Namespace, profile: Profile | None) -> Decoding:
    """The decoding of the options; with a profile, every field (those without an option
    too, such as min_len) is the profile's unless its option was given."""
    if profile is None:
        return decoding_from(args)
    return Decoding(**{f.name: getattr(args, _OPTION.get(f.name, f.name)) for f in _FIELDS})


def translate_main(argv: list[str] | None = None) -> int:
    setup_logging()
    errors = user_errors()  # imported now: once memory runs out, an import can fail
    try:
        args, profile = _parse(argv)
    except errors as e:
        return fail(e)
    from nmt.outputs import claim
    from nmt.translate import load, translate_file

    output = None
    try:
        if args.output:
            inputs = [args.input, args.profile, *args.model]
            output = claim(
                args.output, "nmt-translate", inputs=inputs, force=args.force, folder=False
            )
        decoding = _decoding(args, profile)  # impossible options fail here, before loading
        translator = load(
            args.model,
            backend=args.backend,
            device=args.device,
            threads=args.threads,
            inter_threads=args.inter_threads,
            compute_type=args.compute_type,
            exact_length_limits=args.exact_length_limits,
            **foreign_options(args),
        )
    except errors as e:
        return fail(e)
    ct2 = getattr(translator, "backend", "") == "ctranslate2"
    extra: dict[str, object] = {"use_vmap": False} if args.no_vmap and ct2 else {}
    if profile is not None:
        extra["chunk_lines"] = profile.batch_size  # sentences per translate() call, as measured
    try:
        translate_file(translator, args.input, output, decoding, args.max_line_chars, **extra)
    except (OSError, ValueError, MemoryError) as e:  # unreadable input, full disk, line too long
        return fail(e)
    return 0
