"""Scale: nmt-prepare throughput, nmt-train's peak memory against corpus size, and training
tokens/s of one process with 2 threads against 2 DDP processes of 1 thread.

The corpus: `--pairs` synthetic pairs (default 10,000,000) built reproducibly from the real
ones. The pool is every pair of the shared Multi30k and Tatoeba training sets (185,644); a
synthetic pair joins two pool pairs drawn with a seeded numpy generator, source to source and
target to target ("A dog runs. Two men talk." / "Ein Hund rennt. Zwei Männer reden."): real
sentences, translations of each other, twice the usual length, and ~34 billion possible
combinations, so nearly every pair is new. The first 100,000 and 1,000,000 pairs are the
smaller corpora (the same file's head).

Measured, each in a fresh process, nothing else running (the caller's job):
1. `nmt.prepare.folder.prepare` of the first `--throughput-pairs` pairs with 1 and with 2 workers,
   then of all `--pairs` with 2 workers: pairs/s (wall), bytes on disk per kept pair;
2. `nmt-train` (tiny model, `--steps` updates, no validation decoding) reading prepared shards
   of 100,000 and of `--pairs` pairs, and reading the 100,000 and 1,000,000-pair files in
   memory as before `nmt-prepare` existed: peak RSS (`/usr/bin/time`'s maximum resident set);
3. the same training on the Multi30k + Tatoeba shards, `--tps-steps` updates of 2 batches of
   2,048 tokens: 1 process x 2 threads (`accum_steps: 2`) and 2 DDP processes x 1 thread
   (torchrun, gloo): mean target tokens/s from each run's summary.json.

    python benchmarks/scale.py                       # ~20 min on 2 cores; results/scale/
    python benchmarks/scale.py --pairs 200000 --throughput-pairs 100000 --out /tmp/scale

Writes OUT/results.json and OUT/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TOKENIZER = ROOT / "models" / "multi30k-tiny" / "spm.model"
RUN_CONFIG = ROOT / "models" / "multi30k-tiny.yaml"
SMALL = 100_000
MEDIUM = 1_000_000


# ---- the corpus ---------------------------------------------------------------------------


def pool(data: Path) -> tuple[list[str], list[str]]:
    src, tgt = [], []
    for corpus in ("multi30k", "tatoeba"):
        src += (data / corpus / "train.en").read_text(encoding="utf-8").splitlines()
        tgt += (data / corpus / "train.de").read_text(encoding="utf-8").splitlines()
    assert len(src) == len(tgt)
    return src, tgt


def synthetic_corpus(folder: Path, pairs: int, data: Path, seed: int = 1) -> Path:
    """`folder/train.{en,de}`: `pairs` joined pool pairs (module docstring); reused when
    already there with as many lines."""
    prefix = folder / "train"
    done = folder / "done.json"
    if done.is_file() and json.loads(done.read_text()) == {"pairs": pairs, "seed": seed}:
        return prefix
    folder.mkdir(parents=True, exist_ok=True)
    src, tgt = pool(data)
    rng = np.random.default_rng(seed)
    chunk = 500_000
    with (
        open(f"{prefix}.en", "w", encoding="utf-8") as en,
        open(f"{prefix}.de", "w", encoding="utf-8") as de,
    ):
        for start in range(0, pairs, chunk):
            n = min(chunk, pairs - start)
            a, b = rng.integers(0, len(src), size=(2, n))
            en.write("".join(f"{src[i]} {src[j]}\n" for i, j in zip(a, b, strict=True)))
            de.write("".join(f"{tgt[i]} {tgt[j]}\n" for i, j in zip(a, b, strict=True)))
    done.write_text(json.dumps({"pairs": pairs, "seed": seed}))
    return prefix


def head(prefix: Path, folder: Path, lines: int) -> Path:
    """The first `lines` pairs of `prefix` as `folder/train.{en,de}`, with Multi30k's dev
    set beside them (for an in-memory nmt-train run over the folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    for lang in ("en", "de"):
        target = folder / f"train.{lang}"
        if not target.is_file():
            with (
                open(f"{prefix}.{lang}", encoding="utf-8") as f,
                open(target, "w", encoding="utf-8") as out,
            ):
                for _, line in zip(range(lines), f, strict=False):
                    out.write(line)
        shutil.copyfile(SHARED / "multi30k" / f"val.{lang}", folder / f"val.{lang}")
    return folder / "train"


# ---- measurements -------------------------------------------------------------------------


def timed(command: list[str], log: Path, env: dict | None = None) -> dict:
    """Run `command` under /usr/bin/time -v; wall seconds and peak RSS (MiB)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(
            ["/usr/bin/time", "-v", *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
    seconds = time.perf_counter() - started
    text = log.read_text()
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}); see {log}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(rss_kb / 1024, 1)}


def prepare_yaml(path: Path, prefix: Path, out: Path) -> Path:
    path.write_text(
        f"output_dir: {out}\ntokenizer: {{model: {TOKENIZER}}}\n"
        f"prepare:\n  max_tokens: 255\n  corpora: [{{name: synthetic, path: {prefix}}}]\n"
    )
    return path


def prepare_run(work: Path, name: str, prefix: Path, workers: int) -> dict:
    out = work / "prepared" / name
    shutil.rmtree(out, ignore_errors=True)
    config = prepare_yaml(work / f"{name}.yaml", prefix, out)
    command = [sys.executable, "-m", "nmt", "prepare", "--config", str(config)]
    result = timed([*command, "--workers", str(workers)], work / f"{name}.log")
    manifest = json.loads((out / "manifest.json").read_text())
    shard_bytes = sum(s["bytes"] for s in manifest["shards"])
    result.update(
        workers=workers,
        lines=manifest["lines"],
        kept=manifest["pairs"],
        pairs_per_s=round(manifest["lines"] / result["seconds"], 0),
        shard_bytes=shard_bytes,
        bytes_per_pair=round(shard_bytes / manifest["pairs"], 1),
        tokens_dtype=manifest["dtype"],
    )
    return result


def train_overrides(run_dir: Path, steps: int, *extra: str) -> list[str]:
    sets = [
        f"run_dir={run_dir}",
        f"data.data_dir={SHARED}",  # the dev set; a run over other files sets its own
        f"tokenizer.model={TOKENIZER}",
        f"train.max_steps={steps}",
        "train.valid_every=100000",
        "train.valid_bleu=false",
        f"train.save_every={steps}",
        "train.average_last=0",
        f"train.log_every={max(1, steps // 4)}",
        *extra,
    ]
    return [x for s in sets for x in ("--set", s)]


def train_rss(work: Path, name: str, steps: int, *extra: str) -> dict:
    run_dir = work / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "nmt", "train", "--config", str(RUN_CONFIG)]
    command += train_overrides(run_dir, steps, *extra)
    result = timed(command, work / f"{name}.log")
    summary = json.loads((run_dir / "summary.json").read_text())
    result.update(steps=summary["steps"], train_pairs=summary["train_pairs"].get("kept"))
    return result


def tokens_per_s(work: Path, name: str, steps: int, nproc: int) -> dict:
    run_dir = work / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    prepared = work / "prepared" / "multi30k-tatoeba"
    sets = [
        f"data.prepared={prepared}",
        "train.batch_tokens=2048",
        f"train.threads={2 if nproc == 1 else 1}",
        f"train.accum_steps={2 if nproc == 1 else 1}",
    ]
    args = ["--config", str(RUN_CONFIG)]
    args += train_overrides(run_dir, steps, *sets)
    if nproc == 1:
        command = [sys.executable, "-m", "nmt", "train", *args]
    else:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command = [*torchrun, f"--nproc_per_node={nproc}", "-m", "nmt", "train", *args]
    result = timed(command, work / f"{name}.log", env={"OMP_NUM_THREADS": "1"})
    summary = json.loads((run_dir / "summary.json").read_text())
    result.update(
        processes=nproc,
        threads_per_process=summary["threads"],
        batches_per_update=summary["batches_per_update"],
        steps=summary["steps"],
        target_tokens=summary["target_tokens"],
        tgt_tokens_per_s=summary["mean_tgt_tokens_per_s"],
    )
    return result


# ---- the report ---------------------------------------------------------------------------


def machine() -> dict:
    sys.path.insert(0, str(ROOT))
    from nmt.machine import hardware, load_average, versions

    return {**hardware("cpu"), "load_average_at_start": load_average(), "versions": versions()}


def report(r: dict) -> str:
    hw = r["machine"]
    flags = ", ".join(hw.get("cpu_features") or []) or "?"
    p = r["prepare"]
    t = r["train_rss"]
    s = r["tokens_per_s"]
    pairs = r["pairs"]
    growth = t["prepared_large"]["peak_rss_mib"] / t["prepared_small"]["peak_rss_mib"] - 1
    memory_slope = (t["memory_medium"]["peak_rss_mib"] - t["memory_small"]["peak_rss_mib"]) / (
        MEDIUM - SMALL
    )
    estimate_gib = (t["memory_small"]["peak_rss_mib"] + memory_slope * (pairs - SMALL)) / 1024
    ddp, one = s["ddp_2x1"], s["single_1x2"]
    grown = t["prepared_large"]["peak_rss_mib"] - t["prepared_small"]["peak_rss_mib"]
    residual = grown * 2**20 / (pairs - SMALL)
    lines = [
        "# Scale: nmt-prepare, trainer memory against corpus size, DDP on CPU",
        "",
        "Runs, nothing else running during any of them (what each measured):",
        "",
        *(
            f"- {run['started']}: `python benchmarks/scale.py {' '.join(run['argv'])}` "
            f"({', '.join(run['parts'])}; {run.get('minutes', '?')} min; load average at the "
            f"start {run['machine'].get('load_average_at_start')})"
            for run in r["runs"]
        ),
        "",
        f"Machine: {hw.get('cpu')} ({hw.get('cpus')} CPUs; {flags}; no AVX-512, VNNI or "
        f"bf16 unless listed), {hw.get('memory_gib')} GiB, torch "
        f"{hw.get('versions', {}).get('torch')}.",
        "",
        f"Corpus: {pairs:,} synthetic pairs, each two real pairs of the shared Multi30k + "
        "Tatoeba training sets (185,644 pairs) joined side by side, drawn with numpy's "
        f"`default_rng(1)` ({r['corpus_bytes'] / 2**30:.2f} GiB as text); the smaller corpora "
        f"are its first {SMALL:,} and {MEDIUM:,} lines. Tokenizer "
        "`models/multi30k-tiny/spm.model` (8,000 pieces, so token ids are uint16).",
        "",
        "## nmt-prepare",
        "",
        "| pairs | workers | wall s | pairs/s | kept | bytes on disk / kept pair "
        "| peak RSS MiB (main) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in p:
        lines.append(
            f"| {row['lines']:,} | {row['workers']} | {row['seconds']} | "
            f"{row['pairs_per_s']:,.0f} | {row['kept']:,} | {row['bytes_per_pair']} | "
            f"{row['peak_rss_mib']:,.0f} |"
        )
    one_w, two_w = p[0], p[1]
    lines += [
        "",
        f"2 workers / 1 worker: **{two_w['pairs_per_s'] / one_w['pairs_per_s']:.2f}x** "
        f"pairs/s on {one_w['lines']:,} pairs. Wall time includes start-up, hashing the "
        "sources (sha256, for staleness) and the final manifest. Peak RSS is the main "
        "process's (`/usr/bin/time` reports the largest of the process tree's members).",
        "",
        "## nmt-train peak memory against corpus size",
        "",
        f"`models/multi30k-tiny.yaml` (2.35M parameters), {t['prepared_small']['steps']} "
        "updates of 4,096 tokens, no validation decoding, 1 thread; peak RSS of the whole "
        "command (`/usr/bin/time -v`, maximum resident set size).",
        "",
        "| reading | pairs | peak RSS MiB | wall s |",
        "|---|---:|---:|---:|",
    ]
    for key, label, n in (
        ("prepared_small", "prepared shards (`data.prepared`)", SMALL),
        ("prepared_large", "prepared shards (`data.prepared`)", pairs),
        ("memory_small", "files read into memory (before nmt-prepare)", SMALL),
        ("memory_medium", "files read into memory (before nmt-prepare)", MEDIUM),
    ):
        lines.append(f"| {label} | {n:,} | {t[key]['peak_rss_mib']:,.0f} | {t[key]['seconds']} |")
    lines += [
        "",
        f"Prepared shards: {pairs // SMALL}x the pairs, **{growth:+.1%}** peak RSS "
        f"(goal: within +15%); what still grows is {residual:.0f} "
        "bytes a pair (not broken down further). "
        f"In memory: {memory_slope * 1024:,.2f} KiB more per pair between "
        f"{SMALL:,} and {MEDIUM:,} pairs; at that slope {pairs:,} pairs would need about "
        f"{estimate_gib:.0f} GiB (an extrapolation, not run: the machine has "
        f"{hw.get('memory_gib')} GiB).",
        "",
        *(_before(h, pairs) for h in r.get("history", [])),
        "## Training tokens/s: 1 process x 2 threads vs 2 DDP processes x 1 thread",
        "",
        f"Multi30k + Tatoeba prepared shards (weighted 0.7/0.3), tiny model, {one['steps']} "
        "updates of 2 batches of at most 2,048 tokens each (the same global batches), run one "
        "after the other.",
        "",
        "| run | processes x threads | batches / update | target tok/s | wall s | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|",
        f"| 1 process, accum_steps 2 | 1 x {one['threads_per_process']} | "
        f"{one['batches_per_update']} | {one['tgt_tokens_per_s']:,.0f} | {one['seconds']} | "
        f"{one['peak_rss_mib']:,.0f} |",
        f"| torchrun, DDP gloo | 2 x {ddp['threads_per_process']} | "
        f"{ddp['batches_per_update']} | {ddp['tgt_tokens_per_s']:,.0f} | {ddp['seconds']} | "
        f"{ddp['peak_rss_mib']:,.0f} |",
        "",
        f"2 DDP processes / 1 process of 2 threads: **"
        f"{ddp['tgt_tokens_per_s'] / one['tgt_tokens_per_s']:.2f}x** target tokens/s "
        "(training time only: summary.json's mean_tgt_tokens_per_s). Peak RSS of the DDP run "
        "is one process's (the largest).",
        "",
    ]
    return "\n".join(lines)


def _before(h: dict, pairs: int) -> str:
    small = h["train_rss"]["prepared_small"]["peak_rss_mib"]
    large = h["train_rss"]["prepared_large"]["peak_rss_mib"]
    return (
        f"Before (the {h['note']}): prepared shards {SMALL:,} -> {pairs:,} pairs: "
        f"{small:,.0f} -> {large:,.0f} MiB ({large / small - 1:+.1%}).\n"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=10_000_000)
    p.add_argument("--throughput-pairs", type=int, default=MEDIUM)
    p.add_argument("--steps", type=int, default=30, help="updates of the memory runs")
    p.add_argument("--tps-steps", type=int, default=100, help="updates of the tokens/s runs")
    p.add_argument("--data-dir", type=Path, default=SHARED)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/nmt-scale"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale")
    p.add_argument(
        "--parts",
        default="prepare,memory,speed",
        help="measure only these (prepare, memory, speed); the others are kept from "
        "OUT/results.json (memory reuses WORKDIR's prepared folders)",
    )
    args = p.parse_args()
    parts = set(args.parts.split(","))
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    previous = args.out / "results.json"
    result = json.loads(previous.read_text()) if parts != {"prepare", "memory", "speed"} else {}
    result.setdefault("runs", []).append(
        {
            "argv": sys.argv[1:],
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": machine(),
            "parts": sorted(parts),
        }
    )
    result.update(pairs=args.pairs, machine=result["runs"][0]["machine"])
    started = time.perf_counter()
    large = synthetic_corpus(work / "corpus", args.pairs, args.data_dir)
    result["corpus_bytes"] = sum(Path(f"{large}.{x}").stat().st_size for x in ("en", "de"))
    throughput = head(large, work / "throughput", args.throughput_pairs)
    small = head(large, work / "small", SMALL)
    medium = head(large, work / "medium", MEDIUM)
    print("corpus ready", flush=True)

    if "prepare" in parts:
        result["prepare"] = [
            prepare_run(work, "throughput-1", throughput, workers=1),
            prepare_run(work, "throughput-2", throughput, workers=2),
            prepare_run(work, "large", large, workers=2),
            prepare_run(work, "small", small, workers=2),
        ]
        print(json.dumps(result["prepare"]), flush=True)
    mixed = work / "prepared" / "multi30k-tatoeba"
    config = ROOT / "models" / "prepare" / "multi30k-tatoeba.yaml"
    text = config.read_text().replace("runs/prepared/multi30k-tatoeba", str(mixed))
    (work / "multi30k-tatoeba.yaml").write_text(text)
    subprocess.run(
        [sys.executable, "-m", "nmt", "prepare", "--config", str(work / "multi30k-tatoeba.yaml")]
        + ["--data-dir", str(args.data_dir), "--workers", "2"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )

    steps = args.steps
    if "memory" in parts:
        result["train_rss"] = train_memory(work, steps, small, medium)
        print(json.dumps(result["train_rss"]), flush=True)
    if "speed" in parts:
        result["tokens_per_s"] = {
            "single_1x2": tokens_per_s(work, "tps-single", args.tps_steps, nproc=1),
            "ddp_2x1": tokens_per_s(work, "tps-ddp", args.tps_steps, nproc=2),
        }
    result["runs"][-1]["minutes"] = round((time.perf_counter() - started) / 60, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "README.md").write_text(report(result))
    print(report(result))
    return 0


def train_memory(work: Path, steps: int, small: Path, medium: Path) -> dict:
    return {
        "prepared_small": train_rss(
            work, "prepared-small", steps, f"data.prepared={work / 'prepared' / 'small'}"
        ),
        "prepared_large": train_rss(
            work, "prepared-large", steps, f"data.prepared={work / 'prepared' / 'large'}"
        ),
        "memory_small": train_rss(
            work, "memory-small", steps, "data.dataset=", f"data.data_dir={small.parent}"
        ),
        "memory_medium": train_rss(
            work, "memory-medium", steps, "data.dataset=", f"data.data_dir={medium.parent}"
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
