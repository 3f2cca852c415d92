"""nmt-export: a checkpoint to CTranslate2, ONNX Runtime, safetensors or Argos Translate."""

from __future__ import annotations

import argparse

from nmt.cli.common import add_force, fail, setup_logging, user_errors


def _parser() -> argparse.ArgumentParser:
    from nmt.export import EXPORTERS, QUANTIZATIONS

    p = argparse.ArgumentParser(
        prog="nmt-export",
        description="Export a checkpoint to an inference engine (CTranslate2 or ONNX Runtime), "
        "to a safetensors weights folder, or to an Argos Translate package (also from a "
        "CTranslate2 export folder).",
    )
    p.add_argument(
        "model",
        help="run folder (its averaged, best or last checkpoint) or .pt file; "
        "--format argos: also a CTranslate2 export folder",
    )
    p.add_argument(
        "--output", "-o", required=True, help="export folder (argos: .argosmodel file) to create"
    )
    p.add_argument("--format", default="ct2", choices=sorted(EXPORTERS))
    p.add_argument("--int8", action="store_true", help="same as --quantization int8")
    p.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        help="weight type (default float32, argos int8; ONNX: float32 or int8; safetensors: "
        "float16, bfloat16 or float32)",
    )
    p.add_argument("--vmap", help="CTranslate2, argos: vocabulary map to ship (see nmt-vmap)")
    add_force(p, "replace an existing export")
    argos = p.add_argument_group("argos")
    argos.add_argument(
        "--from",
        dest="from_code",
        metavar="CODE",
        help="source language code (default: the checkpoint's)",
    )
    argos.add_argument(
        "--to",
        dest="to_code",
        metavar="CODE",
        help="target language code (default: the checkpoint's)",
    )
    argos.add_argument(
        "--version", dest="package_version", metavar="VERSION", help="package version (default 1.0)"
    )
    argos.add_argument(
        "--sbd-model",
        metavar="FILE",
        help="a MiniSBD sentence splitter (.onnx) to ship instead of nmt's rule-based one",
    )
    return p


def _checked_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """The argos options given; a usage error where options contradict each other."""
    if args.int8 and args.quantization not in (None, "int8"):
        p.error("--int8 contradicts --quantization " + args.quantization)
    if args.vmap and args.format not in ("ct2", "argos"):
        p.error("--vmap applies to --format ct2 and argos only")
    options = {
        "from_code": args.from_code,
        "to_code": args.to_code,
        "version": args.package_version,
        "sbd_model": args.sbd_model,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if args.format != "argos" and options:
        p.error("--from, --to, --version and --sbd-model apply to --format argos only")
    return options


def export_main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    setup_logging()
    options = _checked_options(p, args)
    from nmt.export import export
    from nmt.export.folder import ExportError

    try:
        out = export(
            args.model,
            args.output,
            format=args.format,
            quantization="int8" if args.int8 else args.quantization,
            vmap=args.vmap,
            force=args.force,
            **options,
        )
    except (*user_errors(), ExportError, FileExistsError) as e:
        return fail(e)
    print(out)
    return 0
