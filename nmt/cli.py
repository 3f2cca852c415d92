"""Thin command-line entry points: parse, load the config, call one library function."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from nmt import __version__

# One meaning for every command's --data-dir: the data root, as ../shared/data is.
DATA_DIR_HELP = (
    "data root: a registered dataset's files are found in DIR/NAME/ (or DIR/), other "
    "relative corpus paths under DIR (default $NMT_DATA_DIR, else the download cache)"
)


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def _fail(error: Exception) -> int:
    """User errors (bad config, corpus, checkpoint) end in one line, not a traceback."""
    print(f"error: {error}", file=sys.stderr)
    return 2


def _user_errors() -> tuple[type[Exception], ...]:
    from nmt.checkpoint import CheckpointError
    from nmt.config import ConfigError
    from nmt.data.corpus import CorpusError
    from nmt.data.datasets import DatasetError
    from nmt.export.folder import ExportError
    from nmt.outputs import FolderBusyError
    from nmt.prepare.folder import PrepareError
    from nmt.weights import WeightsError

    # OSError: a missing or unreadable file, a full disk (the message names the file).
    return (
        ConfigError,
        FolderBusyError,
        CorpusError,
        DatasetError,
        CheckpointError,
        ExportError,
        PrepareError,
        WeightsError,
        OSError,
        ValueError,
    )


def train_main(argv: list[str] | None = None) -> int:
    if argv is None:  # a console run (not a call from Python): use the faster allocator
        from nmt.allocator import reexec_with_tcmalloc

        reexec_with_tcmalloc("train")
    p = argparse.ArgumentParser(prog="nmt-train", description="Train a Transformer NMT model.")
    p.add_argument("--config", "-c", help="run config (YAML); see models/*.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in run_dir from its last checkpoint"
    )
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--version", action="version", version=f"nmt {__version__}")
    args = p.parse_args(argv)
    if not args.config and not args.overrides:
        p.error("--config is needed (a run config YAML such as models/multi30k-small.yaml)")
    _setup_logging()
    from nmt.config import load_run_config
    from nmt.training import distributed
    from nmt.training.run import train
    from nmt.training.stopping import TrainingStopped

    main = distributed.is_main()  # under torchrun, rank 0 reports; the others only warn
    if not main:
        logging.getLogger("nmt").setLevel(logging.WARNING)
    try:
        overrides = args.overrides + ([f"data.data_dir={args.data_dir}"] if args.data_dir else [])
        config = load_run_config(args.config, overrides)
        summary = train(config, resume=args.resume)
    except _user_errors() as e:
        return _fail(e)
    except TrainingStopped as e:
        if main:
            print(f"stopped: {e}", file=sys.stderr)
        return e.exit_code
    if main:
        print(json.dumps({k: v for k, v in summary.items() if k != "validations"}, indent=2))
    return 0


def translate_main(argv: list[str] | None = None) -> int:
    from nmt.decoding import Decoding, is_out_of_memory
    from nmt.translate import BACKENDS, MAX_LINE_CHARS

    p = argparse.ArgumentParser(
        prog="nmt-translate",
        description="Translate text, one line in, "
        "one line out (stdin/stdout when no files are given).",
    )
    p.add_argument(
        "--model",
        "-m",
        required=True,
        action="append",
        help="run folder, checkpoint or export; several -m: an ensemble of PyTorch models",
    )
    p.add_argument("--input", "-i", help="input file (default: stdin)")
    p.add_argument("--output", "-o", help="output file (default: stdout)")
    p.add_argument(
        "--force", action="store_true", help="replace an output file nmt-translate wrote before"
    )
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS])
    p.add_argument("--beam", type=int, default=Decoding.beam_size, help="beam size (1 = greedy)")
    p.add_argument(
        "--batch-tokens",
        type=int,
        default=Decoding.max_batch_tokens,
        help="max source tokens a batch",
    )
    p.add_argument("--length-penalty", type=float, default=Decoding.length_penalty)
    p.add_argument("--max-len-a", type=float, default=Decoding.max_len_a)
    p.add_argument("--max-len-b", type=int, default=Decoding.max_len_b)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads per translator (CTranslate2 intra_threads; 0: library default)",
    )
    p.add_argument(
        "--inter-threads", type=int, default=1, help="CTranslate2: batches translated in parallel"
    )
    p.add_argument(
        "--compute-type",
        default="default",
        help="CTranslate2: int8, int8_float16, float16, float32, ... (default: as exported)",
    )
    p.add_argument(
        "--no-vmap", action="store_true", help="CTranslate2: ignore the export's vocabulary map"
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
    args = p.parse_args(argv)
    _setup_logging()
    from dataclasses import asdict

    from nmt.outputs import claim
    from nmt.translate import load, translate_stream

    output = None
    if args.output:
        inputs = [args.input, *args.model]
        try:
            output = claim(
                args.output, "nmt-translate", inputs=inputs, force=args.force, folder=False
            )
        except OSError as e:
            return _fail(e)
    user_errors = _user_errors()  # imported now: once memory runs out, an import can fail
    engine: dict[str, object] = {"device": args.device, "threads": args.threads}
    extra: dict[str, object] = {}
    try:
        decoding = Decoding(  # impossible options fail here, before the model is loaded
            beam_size=args.beam,
            max_batch_tokens=args.batch_tokens,
            length_penalty=args.length_penalty,
            max_len_a=args.max_len_a,
            max_len_b=args.max_len_b,
        )
        translator = load(
            args.model,
            backend=args.backend,
            **engine,
            inter_threads=args.inter_threads,
            compute_type=args.compute_type,
            exact_length_limits=args.exact_length_limits,
        )
        if args.no_vmap and getattr(translator, "backend", "") == "ctranslate2":
            extra["use_vmap"] = False
    except user_errors as e:
        return _fail(e)
    try:
        with contextlib.ExitStack() as stack:
            # Invalid UTF-8 becomes U+FFFD rather than an exception: one line out per line in.
            src = stack.enter_context(
                open(args.input, encoding="utf-8", errors="replace", newline="\n")
                if args.input
                else open(
                    sys.stdin.fileno(),
                    encoding="utf-8",
                    errors="replace",
                    newline="\n",
                    closefd=False,
                )
            )
            out = stack.enter_context(output.open_text()) if output else sys.stdout
            lines = translate_stream(
                translator, src, **asdict(decoding), max_line_chars=args.max_line_chars, **extra
            )
            for line in lines:
                out.write(line.replace("\n", " ") + "\n")
            out.flush()
    except (OSError, ValueError) as e:  # an unreadable input, a full disk, a line too long
        return _fail(e)
    except Exception as e:  # MemoryError, or an engine's own words for it
        if not is_out_of_memory(e):
            raise
        return _fail(
            MemoryError(
                f"out of memory while translating: lower --batch-tokens ({args.batch_tokens}) "
                f"or --beam ({args.beam}), or use an int8 export (nmt-export --int8)"
            )
        )
    return 0


def average_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nmt-average", description="Average checkpoint weights.")
    p.add_argument("checkpoints", nargs="+", help="checkpoints of one run")
    p.add_argument("--output", "-o", required=True, help="averaged checkpoint to create")
    p.add_argument(
        "--force", action="store_true", help="replace an averaged checkpoint made before"
    )
    args = p.parse_args(argv)
    _setup_logging()
    from nmt.checkpoint import write_average

    try:
        write_average(args.checkpoints, args.output, force=args.force)
    except _user_errors() as e:
        return _fail(e)
    return 0


def evaluate_main(argv: list[str] | None = None) -> int:
    from nmt.decoding import Decoding

    p = argparse.ArgumentParser(
        prog="nmt-evaluate",
        description="Translate a test set and score it with sacrebleu (BLEU, chrF2, signatures).",
    )
    p.add_argument("--model", "-m", required=True, action="append", help="several -m: an ensemble")
    p.add_argument("--src", required=True, help="source file")
    p.add_argument("--ref", required=True, help="reference file")
    p.add_argument("--output-dir", "-o", required=True, help="writes hyp.txt and scores.json")
    p.add_argument(
        "--force", action="store_true", help="replace the hyp.txt and scores.json of an evaluation"
    )
    p.add_argument("--beam", type=int, default=Decoding.beam_size, help="beam size (1 = greedy)")
    p.add_argument("--batch-tokens", type=int, default=Decoding.max_batch_tokens)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--no-vmap", action="store_true", help="CTranslate2: ignore the export's vocabulary map"
    )
    args = p.parse_args(argv)
    _setup_logging()
    from nmt.evaluate import evaluate

    try:
        result = evaluate(
            args.model,
            Path(args.src),
            Path(args.ref),
            Path(args.output_dir),
            beam_size=args.beam,
            max_batch_tokens=args.batch_tokens,
            threads=args.threads,
            device=args.device,
            use_vmap=not args.no_vmap,
            force=args.force,
        )
    except _user_errors() as e:
        return _fail(e)
    print(json.dumps(result, indent=2))
    return 0


def export_main(argv: list[str] | None = None) -> int:
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
    p.add_argument("--force", action="store_true", help="replace an existing export")
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
    args = p.parse_args(argv)
    _setup_logging()
    if args.int8 and args.quantization not in (None, "int8"):
        p.error("--int8 contradicts --quantization " + args.quantization)
    if args.vmap and args.format not in ("ct2", "argos"):
        p.error("--vmap applies to --format ct2 and argos only")
    argos_options = {
        "from_code": args.from_code,
        "to_code": args.to_code,
        "version": args.package_version,
        "sbd_model": args.sbd_model,
    }
    if args.format != "argos" and any(v is not None for v in argos_options.values()):
        p.error("--from, --to, --version and --sbd-model apply to --format argos only")
    from nmt.export import export
    from nmt.export.folder import ExportError

    options = {k: v for k, v in argos_options.items() if v is not None}
    quantization = "int8" if args.int8 else args.quantization
    try:
        out = export(
            args.model,
            args.output,
            format=args.format,
            quantization=quantization,
            vmap=args.vmap,
            force=args.force,
            **options,
        )
    except (*_user_errors(), ExportError, FileExistsError) as e:
        return _fail(e)
    print(out)
    return 0


def bench_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="nmt-bench",
        description="Benchmark a grid of models x backends x settings (BLEU, words/s, latency, "
        "memory), each cell in a fresh process; write results.jsonl, report.md and plots.",
    )
    p.add_argument("--config", "-c", required=True, help="benchmark grid (YAML); see benchmarks/")
    p.add_argument("--output-dir", "-o", help="report folder (default: the grid's output_dir)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a grid value, e.g. repeats=5 or grid.threads=[1,2] (repeatable)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="measure on this device only")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--only", metavar="TEXT", help="only the cells whose id contains TEXT")
    p.add_argument("--force", action="store_true", help="measure again cells already measured")
    p.add_argument("--compare", metavar="OLD.jsonl", help="show what got faster or slower")
    p.add_argument("--report-only", action="store_true", help="rebuild the report, measure nothing")
    p.add_argument("--list", action="store_true", help="print the ids of the cells and exit")
    args = p.parse_args(argv)
    _setup_logging()
    from nmt.bench.grid import load_bench_config
    from nmt.bench.runner import bench, select_cells

    overrides = args.overrides + ([f"data_dir={args.data_dir}"] if args.data_dir else [])
    try:
        config = load_bench_config(args.config, overrides)
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
    except _user_errors() as e:
        return _fail(e)
    print(result.summary())
    return 1 if result.failed else 0  # a script must not take a partial grid for a result


def vmap_main(argv: list[str] | None = None) -> int:
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
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--split", default="train", help="with --data: which files (default train)")
    p.add_argument("--src-lang", default="en")
    p.add_argument("--tgt-lang", default="de")
    p.add_argument("--output", "-o", required=True, help="vmap file (and OUTPUT.json, its info)")
    p.add_argument("--top-k", type=int, default=TOP_K, help="targets per source piece")
    p.add_argument(
        "--frequent", type=int, default=FREQUENT, help="most frequent target pieces always allowed"
    )
    p.add_argument("--min-prob", type=float, default=0.0, help="drop targets with p(t|s) below")
    p.add_argument("--method", default="ibm1", choices=sorted(SCORERS))
    p.add_argument("--iterations", type=int, default=IBM1_ITERATIONS, help="IBM-1 EM rounds")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)
    if args.data:
        if args.src or args.tgt:
            p.error("--data excludes --src/--tgt")
    elif not (args.src and args.tgt):
        p.error("give --src and --tgt, or --data")
    _setup_logging()
    from nmt.data.datasets import get_file
    from nmt.outputs import claim
    from nmt.tokenizer import Tokenizer
    from nmt.vmap import VMAP, build_vmap_from_files, tokenizer_from, write_vmap

    try:
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
    except (*_user_errors(), FileExistsError) as e:
        return _fail(e)
    print(args.output)
    return 0


def distill_main(argv: list[str] | None = None) -> int:
    from nmt.config import DataConfig
    from nmt.data.datasets import DATASETS
    from nmt.distill import DistillConfig

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
        "fastest); several --teacher: an ensemble of PyTorch models",
    )
    p.add_argument(
        "--data",
        required=True,
        help=f"registered dataset ({', '.join(DATASETS)}) or a folder of TRAIN.SRC/TRAIN.TGT files",
    )
    p.add_argument("--data-dir", default="", help=DATA_DIR_HELP)
    p.add_argument("--output", "-o", required=True, help="distilled dataset folder to write")
    p.add_argument("--beam", type=int, default=DistillConfig.beam_size, help="teacher beam size")
    p.add_argument(
        "--workers", type=int, default=DistillConfig.workers, help="translator processes"
    )
    p.add_argument(
        "--threads", type=int, default=DistillConfig.threads, help="threads per translator"
    )
    p.add_argument(
        "--batch-tokens",
        type=int,
        default=DistillConfig.batch_tokens,
        help="source tokens per batch",
    )
    p.add_argument("--max-lines", type=int, default=0, help="distil the first N lines only")
    p.add_argument("--mix", action="store_true", help="also write mix.*: original + distilled")
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
    p.add_argument("--src-lang", default=DataConfig.src_lang)
    p.add_argument("--tgt-lang", default=DataConfig.tgt_lang)
    p.add_argument("--train", default=DataConfig.train, help="split (file prefix) to distil")
    p.add_argument("--valid", default=DataConfig.valid, help="split copied beside the output")
    p.add_argument("--test", default=DataConfig.test, help="split copied beside the output")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting, e.g. filters.max_ratio=3 or compute_type=int8 (repeatable)",
    )
    p.add_argument(
        "--force", action="store_true", help="start over in a folder holding another distillation"
    )
    args = p.parse_args(argv)
    _setup_logging()
    from nmt.distill import DistillError, distill, load_distill_config, source_data

    flags = {
        "beam_size": args.beam,
        "workers": args.workers,
        "threads": args.threads,
        "batch_tokens": args.batch_tokens,
        "max_lines": args.max_lines,
        "mix": args.mix,
        "shard": args.shard,
    }
    try:
        config = load_distill_config(None, args.overrides, flags)
        data = source_data(
            args.data,
            args.data_dir,
            args.src_lang,
            args.tgt_lang,
            args.train,
            args.valid,
            args.test,
        )
        teacher = args.teacher if len(args.teacher) > 1 else args.teacher[0]
        result = distill(teacher, data, args.output, config, force=args.force, merge=args.merge)
    except (*_user_errors(), DistillError) as e:
        return _fail(e)
    print(result.summary())
    return 0


def pipeline_main(argv: list[str] | None = None) -> int:
    if argv is None:  # a console run: train under the faster allocator (see train_main)
        from nmt.allocator import reexec_with_tcmalloc

        reexec_with_tcmalloc("pipeline")
    p = argparse.ArgumentParser(
        prog="nmt-pipeline",
        description="Teacher training, distillation, student training, export and benchmark in "
        "one command. Finished stages are skipped; an interrupted one resumes.",
    )
    p.add_argument("config", help="pipeline (YAML); see pipelines/*.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a pipeline value, e.g. distill.workers=1 or root=runs/x (repeatable)",
    )
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--until", metavar="STAGE", help="stop after this stage (names: --list)")
    p.add_argument("--list", action="store_true", help="print the stages and which are done")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print the estimated duration of the stages not done (a speed probe of some "
        "seconds; a run prints it first) and exit",
    )
    args = p.parse_args(argv)
    _setup_logging()
    from nmt.distill import DistillError
    from nmt.export.folder import ExportError
    from nmt.pipeline import PipelineError, load_pipeline_config, run_pipeline, stage_status
    from nmt.training.stopping import TrainingStopped

    overrides = args.overrides + ([f"data_dir={args.data_dir}"] if args.data_dir else [])
    try:
        config = load_pipeline_config(args.config, overrides)
        if args.list:
            for name, done in stage_status(config):
                print(f"{'done' if done else 'to do'}\t{name}")
            return 0
        if args.estimate:
            from nmt.estimate import estimate_pipeline, report

            print(report(estimate_pipeline(config)))
            return 0
        result = run_pipeline(config, until=args.until)
    except (*_user_errors(), PipelineError, DistillError, ExportError) as e:
        return _fail(e)
    except TrainingStopped as e:
        print(f"stopped: {e}; run the pipeline again to continue", file=sys.stderr)
        return e.exit_code
    print(result.summary())
    return 1 if result.incomplete else 0


def prepare_main(argv: list[str] | None = None) -> int:
    from nmt.prepare.folder import WORKERS

    p = argparse.ArgumentParser(
        prog="nmt-prepare",
        description="Encode training corpora (line-aligned files, gzip or TSV; several, with "
        "weights) into memory-mapped shards with a manifest. Rerun the same command to resume "
        "an interrupted run: only the missing shards are made.",
    )
    p.add_argument(
        "--config", "-c", required=True, help="what to prepare (YAML); see models/prepare/*.yaml"
    )
    p.add_argument(
        "--data-dir",
        help="data root: relative corpus paths are found under DIR (replaces prepare.data_dir)",
    )
    p.add_argument("--workers", type=int, default=WORKERS, help="encoding processes")
    p.add_argument(
        "--force",
        action="store_true",
        help="start over in a folder holding a stale preparation (removes only what "
        "nmt-prepare made there)",
    )
    args = p.parse_args(argv)
    _setup_logging()
    from nmt.prepare.folder import load_prepare_run, prepare

    try:
        run = load_prepare_run(args.config, args.data_dir)
        manifest = prepare(
            run.prepare, run.tokenizer, run.output_dir, workers=args.workers, force=args.force
        )
    except _user_errors() as e:
        return _fail(e)
    print(manifest.summary())
    return 0


if __name__ == "__main__":
    import sys

    command = sys.argv.pop(1)
    sys.exit({"distill": distill_main, "pipeline": pipeline_main}[command](sys.argv[1:]))


COMMANDS = {
    "train": train_main,
    "translate": translate_main,
    "average": average_main,
    "evaluate": evaluate_main,
    "export": export_main,
    "bench": bench_main,
    "vmap": vmap_main,
    "distill": distill_main,
    "pipeline": pipeline_main,
    "prepare": prepare_main,
}
