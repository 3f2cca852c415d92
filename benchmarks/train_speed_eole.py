#!/usr/bin/env python
"""Side-by-side CPU training-speed benchmark: nmt vs eole 0.6.4 (OpenNMT-py's successor).

Both trainers run the same Transformer (d_model 256, 4 heads, FFN 1024, 3+3 pre-norm layers,
tied embeddings, sinusoidal positions) on Multi30k en->de with 4096-token batches, on the CPU
with the same thread count, for the same number of steps. eole trains in fp32 (its CPU path);
nmt runs twice, in fp32 (same arithmetic) and with its default precision (bf16 autocast on a CPU
that has it), and both ratios are reported. Each side's target tokens/s is the mean over its
logged intervals, leaving out the first interval (warm-up: process start, data loading,
allocator growth).

eole lives in its own virtual environment (default `.venv-eole` at the repo root, gitignored),
created on first use with torch pinned to the CPU wheel 2.13.0 (see `ensure_eole_venv`).

Examples (from the repo root)::

    python benchmarks/train_speed_eole.py                       # full run, 150 steps
    python benchmarks/train_speed_eole.py --skip-nmt --steps 60 --report-every 20

Outputs `benchmarks/results/train_speed_vs_eole.{json,md}` (see `--out-dir`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import logging
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from nmt.machine import cpu_features

log = logging.getLogger("train_speed_eole")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "multi30k"
DEFAULT_VENV = REPO_ROOT / ".venv-eole"
DEFAULT_OUT_DIR = REPO_ROOT / "benchmarks" / "results"
DEFAULT_WORK_DIR = Path(tempfile.gettempdir()) / "nmt_train_speed_eole"
RESULT_STEM = "train_speed_vs_eole"
OTHER_CORES_WARN = 0.1  # mean cores used by other processes above which a run is flagged

EOLE_VERSION = "0.6.4"
# The CPU wheel of torch that lies on this machine's disk. A loose torch requirement makes pip
# fetch a multi-GB CUDA build instead, so torch is always named with this exact pin.
TORCH_PIN = "torch==2.13.0"
# eole 0.6.4 imports aiohttp (eole/bin/tools/load_test.py, loaded by every `eole` command)
# without declaring it as a dependency.
EOLE_UNDECLARED_DEPS = ("aiohttp",)

# The nmt side: models/multi30k-small.yaml with what must match the eole side set explicitly
# (threads, tokenizer). It runs once per precision in --nmt-precisions: fp32 matches eole's
# arithmetic; auto is nmt's default (bf16 autocast where the CPU has it).
# valid_bleu=false only shortens the validation nmt runs after its last step.
DEFAULT_NMT_CMD = (
    "{python} -m nmt train --config models/multi30k-small.yaml --data-dir {data_dir}"
    " --set train.max_steps={steps} --set run_dir={tmpdir} --set tokenizer.model={spm}"
    " --set train.precision={precision} --set train.threads={threads}"
    " --set train.log_every={report_every} --set train.valid_bleu=false"
)

# Model and optimiser settings shared by both sides (the nmt side takes them from its own
# config file; they are recorded in the results for reference).
BATCH_TOKENS = 4096
MODEL = {"d_model": 256, "heads": 4, "ffn": 1024, "enc_layers": 3, "dec_layers": 3}

# One eole 0.6.4 training report (one line; eole/utils/statistics.py, Statistics.output):
# [2026-11-28 04:21:41,310 INFO] Step 60/   60; acc: 9.6; ppl: 1592.97; xent: 7.37; aux: 0.000;
#   mtp: 0.000; attn_ent: 0.000; lr: 2.34e-04; sents:    5047; bsz: 3274/3648/252;
#   1388/1547 tok/s;    373 sec;
# sents: sentences in the interval; bsz: mean non-padding src tokens / tgt tokens / sentences per
# batch; tok/s: non-padding src / tgt tokens over the interval's wall time; sec: since the start.
EOLE_STEP_RE = re.compile(
    r"Step\s+(?P<step>\d+)(?:/\s*(?P<total>\d+))?;.*?"
    r"sents:\s*(?P<sents>\d+);\s*"
    r"bsz:\s*(?P<src_per_batch>\d+)/\s*(?P<tgt_per_batch>\d+)/\s*(?P<sents_per_batch>\d+);\s*"
    r"(?P<src_tok_s>\d+)/\s*(?P<tgt_tok_s>\d+)\s+tok/s;\s*"
    r"(?P<elapsed>\d+)\s+sec"
)


@dataclass
class EoleInterval:
    """One `Step ...` report of eole: averages over the steps since the previous report."""

    step: int
    sents: int
    src_tokens_per_batch: int  # non-padding source tokens
    tgt_tokens_per_batch: int  # non-padding target tokens (the loss tokens, EOS included)
    src_tokens_per_s: float
    tgt_tokens_per_s: float
    elapsed_s: int  # since the start of training, rounded to whole seconds


# --------------------------------------------------------------------------------------------
# eole environment


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def eole_marker(venv: Path) -> Path:
    return venv / f"eole-{EOLE_VERSION}-verified"


def eole_works(venv: Path) -> bool:
    """Whether `eole train -h` runs; the answer is cached in a marker file in the venv
    (the check itself costs several CPU seconds of imports)."""
    eole = venv / "bin" / "eole"
    if not eole.exists():
        return False
    if eole_marker(venv).exists():
        return True
    proc = subprocess.run([str(eole), "train", "-h"], capture_output=True, text=True)
    if proc.returncode != 0:
        return False
    eole_marker(venv).write_text("`eole train -h` ran\n", encoding="utf-8")
    return True


def ensure_eole_venv(venv: Path) -> None:
    """Create `venv` with eole installed unless it already has a working `eole train`.

    The recipe: torch first, by exact pin, so the CPU wheel on disk is used; then eole with the
    same pin repeated so pip's resolver cannot swap torch (eole 0.6.4 asks for
    `torch>=2.10,<2.15`, which 2.13.0 satisfies, so no `--no-deps` is needed); then the
    dependencies eole imports but does not declare.
    """
    if eole_works(venv):
        log.info("eole venv ready: %s", venv)
        return
    log.info("creating the eole venv at %s (about 2 GB, a minute or two)", venv)
    if not venv_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, TORCH_PIN], check=True)
    subprocess.run([*pip, f"eole=={EOLE_VERSION}", TORCH_PIN], check=True)
    subprocess.run([*pip, *EOLE_UNDECLARED_DEPS, TORCH_PIN], check=True)
    if not eole_works(venv):
        raise RuntimeError(f"`eole train -h` still fails in {venv}; see the pip output above")
    log.info("eole venv ready: %s", venv)


def venv_versions(venv: Path) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m; "
        "print(json.dumps({p: m.version(p) for p in ('eole', 'torch')}))"
    )
    out = subprocess.run(
        [str(venv_python(venv)), "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


# --------------------------------------------------------------------------------------------
# Data: SentencePiece model and eole vocabulary


def train_spm(data_dir: Path, src: str, tgt: str, out_prefix: Path, threads: int) -> Path:
    """Train a joint unigram SentencePiece model (8k) on the training text of both languages."""
    import sentencepiece as spm

    model = out_prefix.with_suffix(".model")
    if model.exists():
        log.info("reusing SentencePiece model %s", model)
        return model
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    inputs = [data_dir / f"train.{src}", data_dir / f"train.{tgt}"]
    log.info("training a joint unigram 8k SentencePiece model on %s", ", ".join(map(str, inputs)))
    t0 = time.perf_counter()
    spm.SentencePieceTrainer.train(
        input=",".join(map(str, inputs)),
        model_prefix=str(out_prefix),
        model_type="unigram",
        vocab_size=8000,
        character_coverage=1.0,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        pad_piece="<pad>",
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        normalization_rule_name="nmt_nfkc",
        hard_vocab_limit=False,
        num_threads=threads,
        minloglevel=2,
    )
    log.info("SentencePiece model trained in %.1f s: %s", time.perf_counter() - t0, model)
    return model


def write_eole_vocab(spm_model: Path, out: Path) -> int:
    """Write the SentencePiece pieces, in id order, as an eole vocabulary (one token a line).

    The four special pieces are renamed to eole's own special tokens (pad `<blank>`, `<unk>`,
    `<s>`, `</s>`), so eole's ids equal the SentencePiece ids and no extra entries are added.
    """
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    rename = {sp.pad_id(): "<blank>", sp.unk_id(): "<unk>", sp.bos_id(): "<s>", sp.eos_id(): "</s>"}
    pieces = [rename.get(i, sp.id_to_piece(i)) for i in range(sp.get_piece_size())]
    out.write_text("".join(f"{p}\n" for p in pieces), encoding="utf-8")
    return len(pieces)


# --------------------------------------------------------------------------------------------
# eole run


def eole_config(
    *,
    data_dir: Path,
    src: str,
    tgt: str,
    spm_model: Path,
    vocab: Path,
    vocab_size: int,
    run_dir: Path,
    steps: int,
    report_every: int,
    num_workers: int,
    bucket_size: int,
    seed: int,
) -> dict[str, Any]:
    """The eole 0.6.4 training config. Settings the brief leaves open follow the nmt model
    (biases on all projections, none on the tied output layer, [sin | cos] positions,
    gradient clipping at 1.0)."""
    return {
        "seed": seed,
        "overwrite": True,
        "save_data": str(run_dir / "data"),
        "log_file": str(run_dir / "eole.log"),
        "report_every": report_every,
        # Vocabulary: the joint SentencePiece vocabulary, shared by both sides.
        "src_vocab": str(vocab),
        "tgt_vocab": str(vocab),
        "share_vocab": True,
        "src_vocab_size": vocab_size,
        "tgt_vocab_size": vocab_size,
        "vocab_size_multiple": 1,
        "n_sample": 0,
        # No validation set: only training steps are timed.
        "data": {
            "corpus_1": {
                "path_src": str(data_dir / f"train.{src}"),
                "path_tgt": str(data_dir / f"train.{tgt}"),
            }
        },
        "transforms": ["sentencepiece"],
        "transforms_configs": {
            "sentencepiece": {
                "src_subword_model": str(spm_model),
                "tgt_subword_model": str(spm_model),
            }
        },
        "training": {
            "model_path": str(run_dir / "model"),
            "train_steps": steps,
            "save_checkpoint_steps": 0,  # only the final save, after the last report
            "keep_checkpoint": 1,
            # CPU: no GPU ranks.
            "world_size": 1,
            "gpu_ranks": [],
            "compute_dtype": "fp32",
            # Batching: 4096 tokens, counted as sentences x max(padded src, padded tgt) length.
            "batch_type": "tokens",
            "batch_size": BATCH_TOKENS,
            "batch_size_multiple": 1,
            "accum_count": [1],
            "accum_steps": [0],
            "normalization": "tokens",
            # 0 = batches are built in the training process; worker processes would only
            # compete with the trainer for the same cores.
            "num_workers": num_workers,
            # eole reads this many examples (cycling over the corpus), tokenises and sorts them
            # by length before the first batch, and again each time a bucket is used up.
            "bucket_size": bucket_size,
            # Optimiser: Adam(0.9, 0.998), noam schedule with factor 0.5 and 400 warm-up steps.
            "optim": "adam",
            "adam_beta1": 0.9,
            "adam_beta2": 0.998,
            "learning_rate": 0.5,
            "decay_method": "noam",
            "warmup_steps": 400,
            "max_grad_norm": 1.0,
            "label_smoothing": 0.1,
            "dropout": [0.1],
            "attention_dropout": [0.1],
            "dropout_steps": [0],
            "param_init_method": "xavier_uniform",
            # A per-step diagnostic that is on by default in eole: not training work.
            "log_attention_entropy": False,
        },
        "model": {
            "architecture": "transformer",
            "hidden_size": MODEL["d_model"],
            "heads": MODEL["heads"],
            "transformer_ff": MODEL["ffn"],
            "encoder": {"layers": MODEL["enc_layers"], "encoder_layer_style": "standard"},
            "decoder": {"layers": MODEL["dec_layers"]},
            "layer_norm": "standard",  # eole's layers are pre-norm, with a final LayerNorm
            "mlp_activation_fn": "relu",
            "add_qkvbias": True,
            "add_final_linear_bias": True,
            "add_ffnbias": True,
            "generator_bias": False,
            "share_embeddings": True,
            "share_decoder_embeddings": True,
            "embeddings": {
                "word_vec_size": MODEL["d_model"],
                "position_encoding_type": "SinusoidalConcat",
            },
        },
    }


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (all processes; hypervisor steal
    counted as busy), from /proc/stat; None where that file is missing."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def other_cores_now(seconds: float = 1.0) -> float | None:
    """Mean number of cores the machine keeps busy over `seconds` (this script idles meanwhile)."""
    busy0 = machine_busy_s()
    time.sleep(seconds)
    busy1 = machine_busy_s()
    return None if busy0 is None or busy1 is None else (busy1 - busy0) / seconds


def run_logged(
    cmd: list[str] | str, log_path: Path, env: dict[str, str], timeout: float, shell: bool = False
) -> dict[str, float | None]:
    """Run `cmd` with stdout and stderr going to `log_path`.

    Returns wall and CPU seconds of the run and `other_cores`: the mean number of cores that
    everything else on the machine kept busy during the run (`other_cores_before`: in the second
    before it). Other work shares the trainer's cores, so a figure well above zero means the
    measured speed is low.
    """
    log.info("running: %s", cmd if isinstance(cmd, str) else shlex.join(cmd))
    log.info("output: %s", log_path)
    before = other_cores_now()
    if before is not None and before > OTHER_CORES_WARN:
        log.warning("other processes are keeping %.2f cores busy: this run will be slowed", before)
    cpu0, busy0 = children_cpu_s(), machine_busy_s()
    t0 = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as out:
        proc = subprocess.run(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
            timeout=timeout,
            shell=shell,
        )
    wall = time.perf_counter() - t0
    cpu = children_cpu_s() - cpu0
    busy1 = machine_busy_s()
    other = None if busy0 is None or busy1 is None else max(0.0, busy1 - busy0 - cpu) / wall
    if proc.returncode != 0:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)
        tail = "".join(lines[-30:])
        raise RuntimeError(f"command failed with exit code {proc.returncode}:\n{tail}")
    log.info("finished in %.0f s (%.0f CPU s)", wall, cpu)
    if other is not None and other > OTHER_CORES_WARN:
        log.warning("other processes kept %.2f cores busy during this run", other)
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "other_cores_before": None if before is None else round(before, 2),
        "other_cores": None if other is None else round(other, 2),
    }


def parse_eole_log(text: str) -> list[EoleInterval]:
    intervals = []
    for m in EOLE_STEP_RE.finditer(text):
        intervals.append(
            EoleInterval(
                step=int(m["step"]),
                sents=int(m["sents"]),
                src_tokens_per_batch=int(m["src_per_batch"]),
                tgt_tokens_per_batch=int(m["tgt_per_batch"]),
                src_tokens_per_s=float(m["src_tok_s"]),
                tgt_tokens_per_s=float(m["tgt_tok_s"]),
                elapsed_s=int(m["elapsed"]),
            )
        )
    return intervals


def run_eole(args: argparse.Namespace, spm_model: Path) -> dict[str, Any]:
    ensure_eole_venv(args.eole_venv)
    run_dir = Path(tempfile.mkdtemp(prefix="eole_run_", dir=args.work_dir))
    vocab = run_dir / "vocab.txt"
    vocab_size = write_eole_vocab(spm_model, vocab)
    config = eole_config(
        data_dir=args.data_dir,
        src=args.src,
        tgt=args.tgt,
        spm_model=spm_model,
        vocab=vocab,
        vocab_size=vocab_size,
        run_dir=run_dir,
        steps=args.steps,
        report_every=args.report_every,
        num_workers=args.eole_num_workers,
        bucket_size=args.eole_bucket_size,
        seed=args.seed,
    )
    config_path = run_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    log.info("eole config: %s", config_path)

    eole = args.eole_venv / "bin" / "eole"
    stdout_log = run_dir / "stdout.log"
    run_stats = run_logged(
        [str(eole), "train", "--config", str(config_path)],
        stdout_log,
        thread_env(args.threads),
        args.timeout,
    )
    intervals = parse_eole_log(stdout_log.read_text(encoding="utf-8", errors="replace"))
    if len(intervals) < 2:
        raise RuntimeError(
            f"found {len(intervals)} 'Step' reports in {stdout_log}; need at least 2 "
            "(raise --steps or lower --report-every)"
        )
    measured = intervals[1:]
    versions = venv_versions(args.eole_venv)
    return {
        "tgt_tokens_per_s": statistics.fmean(i.tgt_tokens_per_s for i in measured),
        "src_tokens_per_s": statistics.fmean(i.src_tokens_per_s for i in measured),
        "tgt_tokens_per_s_weighted": weighted_rate(intervals),
        "intervals": [asdict(i) for i in intervals],
        "intervals_measured": len(measured),
        **run_stats,
        "versions": versions,
        "num_workers": args.eole_num_workers,
        "bucket_size": args.eole_bucket_size,
        "run_dir": str(run_dir),
        "config": str(config_path),
        "log": str(stdout_log),
    }


def weighted_rate(intervals: list[EoleInterval]) -> float:
    """Target tokens over seconds across all intervals but the first (warm-up).

    An interval's tokens are its step count times its average target tokens per batch; its
    seconds are those tokens over its rate.
    """
    tokens = seconds = 0.0
    for prev, cur in itertools.pairwise(intervals):
        n = (cur.step - prev.step) * cur.tgt_tokens_per_batch
        tokens += n
        seconds += n / cur.tgt_tokens_per_s
    return tokens / seconds


# --------------------------------------------------------------------------------------------
# nmt run


def train_records(log_jsonl: Path) -> list[dict[str, Any]]:
    """The training intervals nmt-train logged (one record per `train.log_every` updates)."""
    records = []
    for line in log_jsonl.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("type", "train") == "train" and "tgt_tokens_per_s" in rec:
                records.append(rec)
    return records


def run_nmt(args: argparse.Namespace, spm_model: Path, precision: str) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix="nmt_run_", dir=args.work_dir)) / "run"
    cmd = args.nmt_cmd.format(
        python=shlex.quote(sys.executable),
        steps=args.steps,
        tmpdir=shlex.quote(str(run_dir)),
        threads=args.threads,
        precision=precision,
        report_every=args.report_every,
        spm=shlex.quote(str(spm_model)),
        data_dir=shlex.quote(str(args.data_dir.resolve())),
    )
    stdout_log = run_dir.parent / "stdout.log"
    run_stats = run_logged(cmd, stdout_log, thread_env(args.threads), args.timeout, shell=True)
    log_jsonl = run_dir / "log.jsonl"
    if not log_jsonl.exists():
        raise RuntimeError(f"nmt wrote no {log_jsonl}; see {stdout_log}")
    records = train_records(log_jsonl)
    if len(records) < 2:
        raise RuntimeError(
            f"found {len(records)} records with tgt_tokens_per_s in {log_jsonl}; need at least 2"
        )
    measured = records[1:]
    return {
        "tgt_tokens_per_s": statistics.fmean(float(r["tgt_tokens_per_s"]) for r in measured),
        "intervals": records,
        "intervals_measured": len(measured),
        **run_stats,
        "command": cmd,
        "run_dir": str(run_dir),
        "log": str(stdout_log),
    }


# --------------------------------------------------------------------------------------------
# Report


# Environment variables that hold the math libraries to fewer instructions than the CPU has
# (all three at AVX2: the kernels an AVX2-only CPU runs, on this CPU's cores and caches).
KERNEL_LIMITS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")


def hardware() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.CalledProcessError):
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu_model": model,
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "platform": platform.platform(),
        "kernel_limits": {k: os.environ[k] for k in KERNEL_LIMITS if k in os.environ},
    }


def local_torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def write_markdown(result: dict[str, Any], path: Path) -> None:
    eole, nmt, s = result["eole"], result["nmt"], result["settings"]
    hw, ratios = result["hardware"], result["ratio_nmt_over_eole"]

    def row(name: str, side: dict[str, Any] | None) -> str:
        if side is None:
            return f"| {name} | skipped | | | | |"
        rates = ", ".join(f"{i['tgt_tokens_per_s']:,.0f}" for i in side["intervals"])
        return (
            f"| {name} | **{side['tgt_tokens_per_s']:,.0f}** | {rates} | {side['wall_s']:.0f}"
            f" | {side['cpu_s']:.0f} | {side['other_cores']} |"
        )

    lines = [
        "# Training speed: nmt vs eole",
        "",
        f"Run {result['timestamp']} by `benchmarks/train_speed_eole.py`.",
        "",
        "| trainer | target tok/s | per interval (first = warm-up, left out) | wall s | CPU s"
        " | other cores |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
        *(row(f"nmt, precision {name}", side) for name, side in nmt.items()),
        row(f"eole {result['versions']['eole'] or ''} (fp32)".strip(), eole),
        "",
        *(f"- Ratio nmt ({name}) / eole: **{r:.2f}x**" for name, r in ratios.items()),
        "",
        "Target tok/s: the mean of the per-interval figures each trainer logs, after the first.",
        "Precision `auto` is nmt's default: bf16 autocast where the CPU has native bf16",
        f"(this one: {', '.join(cpu_features()) or 'unknown'}); eole trains in fp32 on the CPU.",
        "nmt runs with TCMalloc when the system has it (its default: `nmt-train` re-executes",
        "itself with the allocator preloaded; the nmt-train log names the allocator).",
    ]
    if result["shared_cpu"]:
        lines += [
            "",
            "**Warning:** other processes kept more than"
            f" {OTHER_CORES_WARN} cores busy on average during a run (column 'other cores'),"
            " so the figures of that run are low.",
        ]
    lines += [
        "",
        "## Setup",
        "",
        f"- Hardware: {hw['cpu_model']}, nproc {hw['nproc']}; CPU only",
        *(
            [f"- Kernels limited (both trainers): {limits}"]
            if (limits := " ".join(f"{k}={v}" for k, v in hw.get("kernel_limits", {}).items()))
            else []
        ),
        f"- Threads: {s['threads']} (OMP/MKL/OPENBLAS_NUM_THREADS for both trainers)",
        f"- Steps: {s['steps']}, logged every {s['report_every']}",
        f"- Batch: {s['batch_tokens']} tokens",
        f"- Model: d_model {MODEL['d_model']}, {MODEL['heads']} heads, FFN {MODEL['ffn']},"
        f" {MODEL['enc_layers']}+{MODEL['dec_layers']} pre-norm layers, tied embeddings",
        f"- nmt: torch {result['versions']['nmt_torch']}",
    ]
    if eole:
        lines += [
            f"- eole: eole {eole['versions']['eole']}, torch {eole['versions']['torch']},"
            f" num_workers {eole['num_workers']}, bucket_size {eole['bucket_size']};"
            f" source tok/s {eole['src_tokens_per_s']:,.0f}",
            "- eole fills a batch while sentences x max(src length, tgt length incl. BOS and EOS)"
            " <= batch size; its tok/s counts non-padding tokens (target: the loss tokens, EOS"
            " included) over the wall time between two reports.",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--steps", type=int, default=150, help="training steps for each trainer")
    p.add_argument(
        "--report-every",
        type=int,
        default=25,
        help="eole report interval in steps (and {report_every} in --nmt-cmd)",
    )
    p.add_argument("--threads", type=int, default=2, help="CPU threads for each trainer")
    p.add_argument(
        "--spm",
        type=Path,
        default=None,
        help="existing SentencePiece model to use instead of training one",
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--src", default="en")
    p.add_argument("--tgt", default="de")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--eole-venv", type=Path, default=DEFAULT_VENV)
    p.add_argument(
        "--eole-num-workers",
        type=int,
        default=0,
        help="eole data-loader worker processes (0: batches built in the trainer)",
    )
    p.add_argument(
        "--eole-bucket-size",
        type=int,
        default=262144,
        help="examples eole tokenises and sorts per bucket (eole's default; with Multi30k the"
        " first bucket holds ~9 passes over the corpus, so no bucket is refilled within 150"
        " steps; smaller values shorten the warm-up)",
    )
    p.add_argument(
        "--nmt-cmd",
        default=DEFAULT_NMT_CMD,
        help="shell command for the nmt trainer; placeholders {python} {steps}"
        " {tmpdir} {threads} {report_every} {spm} {data_dir}; it must write"
        " {tmpdir}/log.jsonl",
    )
    p.add_argument(
        "--nmt-precisions",
        default="fp32,auto",
        help="comma-separated train.precision values; the nmt side runs once per value",
    )
    p.add_argument("--skip-nmt", action="store_true", help="run the eole side only")
    p.add_argument("--skip-eole", action="store_true", help="run the nmt side only")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help="scratch space: SentencePiece model, configs, checkpoints, logs",
    )
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed per trainer")
    args = p.parse_args(argv)
    if args.skip_nmt and args.skip_eole:
        p.error("--skip-nmt and --skip-eole together leave nothing to run")
    if args.steps < 2 * args.report_every:
        p.error("--steps must cover at least two report intervals (one is warm-up)")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)

    spm_model = args.spm or train_spm(
        args.data_dir, args.src, args.tgt, args.work_dir / "spm_unigram8k", args.threads
    )
    spm_model = spm_model.resolve()
    eole, nmt = None, {}
    if not args.skip_eole:
        eole = run_eole(args, spm_model)
        log.info(
            "eole: %.0f target tokens/s (%.0f source tokens/s)",
            eole["tgt_tokens_per_s"],
            eole["src_tokens_per_s"],
        )
    if not args.skip_nmt:
        for precision in args.nmt_precisions.split(","):
            nmt[precision] = run_nmt(args, spm_model, precision)
            log.info(
                "nmt (%s): %.0f target tokens/s", precision, nmt[precision]["tgt_tokens_per_s"]
            )

    ratios = {
        name: side["tgt_tokens_per_s"] / eole["tgt_tokens_per_s"]
        for name, side in nmt.items()
        if eole
    }
    result = {
        "benchmark": "training speed, Multi30k en->de, CPU",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware(),
        "settings": {
            "steps": args.steps,
            "report_every": args.report_every,
            "threads": args.threads,
            "batch_tokens": BATCH_TOKENS,
            "nmt_precisions": list(nmt),
            "eole_dtype": "fp32",
            "model": MODEL,
            "warmup_intervals_excluded": 1,
        },
        "versions": {
            "nmt_torch": local_torch_version(),
            "eole": eole["versions"]["eole"] if eole else None,
            "eole_torch": eole["versions"]["torch"] if eole else None,
        },
        "eole": eole,
        "nmt": nmt,
        "ratio_nmt_over_eole": ratios,
        "shared_cpu": any(
            side is not None and (side["other_cores"] or 0.0) > OTHER_CORES_WARN
            for side in (eole, *nmt.values())
        ),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.out_dir / f"{RESULT_STEM}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_markdown(result, args.out_dir / f"{RESULT_STEM}.md")
    log.info("wrote %s and %s.md", json_path, json_path.with_suffix(""))
    for name, r in ratios.items():
        log.info("nmt (%s) / eole = %.2fx", name, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
