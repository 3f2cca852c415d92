"""nmt-serve: serve models over HTTP (LibreTranslate's API and a native one), batching the
sentences of concurrent requests. Defaults come from `nmt.serve.Settings`; the server stack
(Starlette, uvicorn) is imported only when this command runs."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from typing import Any

from nmt.cli.common import add_beam, add_device, add_threads, fail, setup_logging, user_errors
from nmt.decoding import Decoding

log = logging.getLogger("nmt.serve")

# `nmt.serve.Settings`' defaults, here without importing the server stack (a test checks).
DEFAULTS = dict(
    max_batch_tokens=1024, max_wait_ms=5.0, workers=1, max_chars=5000, queue=256, timeout_s=60.0
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nmt-serve",
        description="Serve models over HTTP: LibreTranslate's /translate and /languages, "
        "/v1/translate, /health, /metrics, a web page at /.",
    )
    p.add_argument(
        "--model",
        "-m",
        action="append",
        metavar="[NAME=]MODEL",
        help="a model (export, run folder, checkpoint); NAME, e.g. en-de, names its language "
        "pair where the export does not record it (repeatable: one model per pair)",
    )
    p.add_argument(
        "--profile",
        metavar="deploy.json",
        help="the runtime `nmt-bench --choose` picked: its model (unless -m; with a "
        "foreign model's tokenizer and prefixes), compute type, vocabulary map, threads "
        "(per batch), translators (--workers) and decoding become the defaults; a warning "
        "when it was measured on another CPU",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument(
        "--workers",
        type=int,
        default=DEFAULTS["workers"],
        help="batches translated at once, each in a thread of its own",
    )
    add_threads(p, help="CPU threads per batch (0: the usable CPUs / --workers)")
    p.add_argument(
        "--max-batch-tokens",
        type=int,
        default=DEFAULTS["max_batch_tokens"],
        help="source tokens a batch holds at most; a batch goes once it is full",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULTS["max_wait_ms"],
        help="the longest a sentence waits for others to share its batch",
    )
    p.add_argument(
        "--max-chars",
        type=int,
        default=DEFAULTS["max_chars"],
        help="characters a request may hold (413 beyond)",
    )
    p.add_argument(
        "--queue",
        type=int,
        default=DEFAULTS["queue"],
        help="requests in progress at once (503 with Retry-After beyond)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULTS["timeout_s"],
        help="seconds a request may take (504 beyond; 0: no limit)",
    )
    p.add_argument(
        "--no-batching",
        action="store_true",
        help="translate each request in batches of its own sentences only (a baseline)",
    )
    add_beam(p, help="default beam size (/v1/translate may ask for another)")
    add_device(p)
    p.add_argument("--compute-type", default="default", help="CTranslate2 weight type (int8, ...)")
    p.add_argument(
        "--exact-length-limits",
        action="store_true",
        help="CTranslate2 beam search: each sentence's own length limit, so that its output "
        "does not depend on the sentences batched with it (slower)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _parse(
    argv: list[str] | None,
) -> tuple[argparse.Namespace, Decoding, bool | None, dict[str, Any]]:
    """The options, the default decoding and the vocabulary-map choice (None: the export's),
    from the command line over the profile's; and the further `nmt.translate.load` options
    of the profile's model (a foreign model's tokenizer and prefixes; none for -m's)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.profile:
        if not args.model:
            parser.error("the following arguments are required: --model/-m (or --profile)")
        return args, Decoding(beam_size=args.beam), None, {}
    from nmt.bench.choose import check_machine, load_profile

    profile = load_profile(args.profile)
    if profile.ensemble:
        parser.error(f"{args.profile}: an ensemble; nmt-serve serves one model per pair")
    ct2 = profile.backend == "ctranslate2"
    parser.set_defaults(
        beam=profile.decoding.beam_size,
        compute_type=profile.compute_type if ct2 else "default",
        device=profile.device,
        threads=profile.threads,
        workers=profile.inter_threads,
    )
    args = parser.parse_args(argv)
    load_options = {} if args.model else profile.load_options()
    args.model = args.model or [profile.model]
    check_machine(profile, args.profile)
    return args, replace(profile.decoding, beam_size=args.beam), profile.use_vmap, load_options


def serve_main(argv: list[str] | None = None) -> int:
    try:
        args, decoding, use_vmap, load_options = _parse(argv)
    except user_errors() as e:
        return fail(e)
    setup_logging(args.verbose)
    try:
        import uvicorn

        from nmt.serve import Settings, app
    except ImportError as e:
        return fail(ImportError(f"{e.name or e} is missing: pip install 'nmt[serve]'"))
    try:
        settings = Settings(
            max_batch_tokens=args.max_batch_tokens,
            max_wait_ms=args.max_wait_ms,
            workers=args.workers,
            threads=args.threads,
            max_chars=args.max_chars,
            queue=args.queue,
            timeout_s=args.timeout,
            batching=not args.no_batching,
            decoding=decoding,
            use_vmap=use_vmap,
        )
        server = app(
            args.model,
            settings,
            device=args.device,
            compute_type=args.compute_type,
            exact_length_limits=args.exact_length_limits,
            load_options=load_options,
        )
    except user_errors() as e:
        return fail(e)
    log.info("listening on http://%s:%d", args.host, args.port)
    uvicorn.run(server, host=args.host, port=args.port, log_level="info")
    return 0
