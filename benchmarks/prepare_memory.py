"""Peak memory of reading a large corpus: in memory (`nmt.data.corpus`, as nmt-train reads it today)
against prepared, memory-mapped shards (`nmt-prepare`).

Writes a synthetic corpus of `--lines` short pairs (words of Multi30k's vocabulary, 3-12 a
side), prepares it with `--workers` processes, then measures each way of reading it in a
fresh process (peak RSS: VmHWM), and writes a Markdown report:

    python benchmarks/prepare_memory.py --lines 2000000 --workers 2 \\
        --output benchmarks/results/prepare_memory.md

Peak RSS counts the pages of memory-mapped shards that are resident while mapped; the
readers keep at most a few shards mapped, so those pages stay bounded too.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MAX_TOKENS = 4096  # batch size in tokens, as nmt-train's default train.batch_tokens
BATCHES = 500  # batches drawn from the random-access corpora

# Each measurement runs in a fresh interpreter: `python prepare_memory.py --measure WHAT DIR`.
MEASURES = {
    "baseline": "imports only (nmt.prepare.folder, nmt.data.corpus, nmt.data.batching: torch "
    "among them)",
    "prepare": "nmt.prepare.folder.prepare (the main process; each worker: next row)",
    "worker": "what a worker does: encode one chunk of shard_lines pairs",
    "read_parallel": "nmt.data.corpus.read_parallel: both sides as Python strings",
    "encoded": "read_parallel + encode_parallel + EpochIterator, "
    f"{BATCHES} batches (nmt-train today)",
    "sharded": f"ShardedCorpus (mmap) + nmt.data.batching.EpochIterator, {BATCHES} batches",
    "streamed": "ShardBatches (mmap, one shard a window): a whole epoch, collated",
}


def synthetic_corpus(folder: Path, lines: int, seed: int = 0) -> Path:
    """`lines` pairs of random Multi30k words, English and German vocabularies."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / "train"
    if Path(f"{prefix}.de").is_file():
        return prefix
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 13, size=lines)
    for lang, shift in (("en", 0), ("de", 1)):
        words = sorted(
            {w for line in (SHARED / "multi30k" / f"train.{lang}").open() for w in line.split()}
        )
        side = np.clip(lengths + rng.integers(-1, 2, size=lines) * shift, 2, None)
        ids = rng.integers(0, len(words), size=int(side.sum()))
        ends = np.cumsum(side)
        with open(f"{prefix}.{lang}", "w", encoding="utf-8") as f:
            for start, end in zip(ends - side, ends, strict=True):
                f.write(" ".join(words[i] for i in ids[start:end]) + "\n")
    return prefix


def measure(what: str, folder: Path, workers: int = 1) -> dict:
    """Run in a fresh process: read the corpus one way, return peak RSS and seconds."""
    from nmt.machine import peak_rss_mb

    prefix, out = folder / "corpus" / "train", folder / "prepared"
    pairs = batches = 0
    extra = {}
    if what == "worker":  # a spawned worker imports nmt.prepare.worker only, not torch
        import sentencepiece as spm

        from nmt.data.sources import corpus_files, read_chunks
        from nmt.prepare.config import load_prepare_run
        from nmt.prepare.worker import Filters, encode_chunk

        start = time.perf_counter()
        run = load_prepare_run(folder / "prepare.yaml")
        corpus = corpus_files("synthetic", prefix, "auto", "en", "de")
        chunk = next(read_chunks(corpus, run.prepare.shard_lines))
        processor = spm.SentencePieceProcessor(model_file=run.tokenizer.model)
        encoded = encode_chunk(processor, chunk.src, chunk.tgt, Filters(1, 256, 3.0, True), "<u2")
        pairs = len(encoded)
        return {
            "what": what,
            "peak_rss_mb": peak_rss_mb(),
            "seconds": round(time.perf_counter() - start, 1),
            "pairs": pairs,
            "batches": 0,
        }
    from nmt.data.batching import EpochIterator
    from nmt.data.corpus import encode_parallel, read_parallel
    from nmt.prepare.folder import load_prepare_run, prepare
    from nmt.prepare.manifest import load_manifest
    from nmt.tokenizer import Tokenizer

    start = time.perf_counter()
    if what == "prepare":
        run = load_prepare_run(folder / "prepare.yaml")
        manifest = prepare(run.prepare, run.tokenizer, run.output_dir, workers=workers, force=True)
        pairs, extra["summary"] = manifest.pairs, manifest.summary()
    elif what == "read_parallel":
        src, tgt = read_parallel(f"{prefix}.en", f"{prefix}.de")
        pairs = len(src)
    elif what == "encoded":
        src, tgt = read_parallel(f"{prefix}.en", f"{prefix}.de")
        corpus = encode_parallel(src, tgt, Tokenizer.from_file(out / "spm.model"))
        del src, tgt
        batches = _draw(EpochIterator(corpus, MAX_TOKENS, seed=1), BATCHES)
        pairs = len(corpus)
    elif what == "sharded":
        corpus = load_manifest(out).corpus()
        batches = _draw(EpochIterator(corpus, MAX_TOKENS, seed=1), BATCHES)
        pairs = len(corpus)
    elif what == "streamed":
        stream = load_manifest(out).batches(MAX_TOKENS, seed=1)
        while True:
            src, _, _ = next(stream)
            if stream.epoch:  # the first batch of the next epoch
                break
            pairs, batches = pairs + len(src), batches + 1
    return {
        "what": what,
        "peak_rss_mb": peak_rss_mb(),
        "seconds": round(time.perf_counter() - start, 1),
        "pairs": pairs,
        "batches": batches,
        **extra,
    }


def _draw(iterator, n: int) -> int:
    for _ in range(n):
        next(iterator)
    return n


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()} ({fields.get('CPU(s)', '?').strip()} CPUs)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=2_000_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--shard-lines", type=int, default=100_000)
    p.add_argument("--tokenizer", default=str(ROOT / "models" / "multi30k-tiny" / "spm.model"))
    p.add_argument("--workdir", default="/tmp/nmt-prepare-memory")
    p.add_argument("--output", help="Markdown report to write")
    p.add_argument("--measure", nargs=2, metavar=("WHAT", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]), args.workers)))
        return 0

    folder = Path(args.workdir)
    started = time.perf_counter()
    reused = Path(folder / "corpus" / "train.de").is_file()
    synthetic_corpus(folder / "corpus", args.lines)
    generated = "reused" if reused else f"generated in {time.perf_counter() - started:.0f} s"
    prepare_yaml = folder / "prepare.yaml"
    prepare_yaml.write_text(
        f"output_dir: {folder / 'prepared'}\ntokenizer: {{model: {args.tokenizer}}}\n"
        f"prepare:\n  shard_lines: {args.shard_lines}\n"
        f"  corpora: [{{name: synthetic, path: {folder / 'corpus' / 'train'}}}]\n"
    )
    results = []
    for what in MEASURES:
        command = [sys.executable, __file__, "--measure", what, str(folder)]
        run = subprocess.run(
            [*command, "--workers", str(args.workers)], capture_output=True, text=True
        )
        if run.returncode:
            sys.stderr.write(run.stderr)
            return run.returncode
        results.append(json.loads(run.stdout.splitlines()[-1]))
        print(results[-1], flush=True)
    report = _report(args, folder, generated, results)
    if args.output:
        Path(args.output).write_text(report, encoding="utf-8")
    print(report)
    return 0


def _report(args, folder: Path, generated: str, results: list[dict]) -> str:
    from nmt.prepare.manifest import load_manifest

    manifest = load_manifest(folder / "prepared")
    corpus_mb = sum((folder / "corpus" / f"train.{x}").stat().st_size for x in ("en", "de")) / 2**20
    shards_mb = sum(s.bytes for s in manifest.shards) / 2**20
    base = results[0]["peak_rss_mb"]
    done = next(r for r in results if r["what"] == "prepare")
    tokenizer = Path(args.tokenizer).resolve()
    tokenizer = tokenizer.relative_to(ROOT) if ROOT in tokenizer.parents else tokenizer
    rows = "\n".join(
        f"| {r['what']} | {MEASURES[r['what']]} | {r['peak_rss_mb']:,.0f} | "
        + (
            "no torch: not comparable"
            if r["what"] == "worker"
            else f"{r['peak_rss_mb'] - base:,.0f}"
        )
        + f" | {r['seconds']} | {r['pairs']:,} | {r['batches']:,} |"
        for r in results
    )
    return f"""# Peak memory: in-memory corpus vs prepared shards

`python benchmarks/prepare_memory.py --lines {args.lines} --workers {args.workers} \\
--shard-lines {args.shard_lines}`

- Machine: {cpu_model()}; Python {platform.python_version()}, numpy {np.__version__}.
- Corpus: {args.lines:,} synthetic pairs (random Multi30k words, 3-12 a side),
  {corpus_mb:,.0f} MiB of text ({generated}).
- Tokenizer: `{tokenizer}`
  ({manifest.tokenizer.vocab_size} pieces, {manifest.dtype} shards).
- nmt-prepare: {args.workers} workers, {args.shard_lines:,} lines a shard,
  {len(manifest.shards)} shards, {shards_mb:,.0f} MiB on disk, {done["seconds"]} s (wall,
  hashing the sources included). {done["summary"]}
- Each row: a fresh process; peak RSS is VmHWM (it includes the resident pages of the
  memory-mapped shards); batches of {MAX_TOKENS} tokens.

| what | how | peak RSS (MiB) | above baseline (MiB) | seconds | pairs | batches |
|---|---|---|---|---|---|---|
{rows}
"""


if __name__ == "__main__":
    sys.exit(main())
