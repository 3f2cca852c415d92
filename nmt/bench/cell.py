"""Measure one benchmark cell: ``python -m nmt.bench.cell < cell.json`` prints one record.

`nmt.bench.runner` starts a fresh process per cell, so a cell has its own memory and finds
no warm cache, and its peak resident memory is its own. The protocol:

1. Load the model (timed) with the cell's backend, device, threads and compute type.
2. Read the test set and keep its selected lines; cut them, in order, into batches of
   `batch_size` sentences; each batch is one `translate()` call.
3. Warm up: translate the first `warmup_batches` batches, untimed. With
   `min_pass_seconds`, translate the whole test set once or twice more, untimed, and time
   it: a timed pass will translate the test set `rounds` times, to last about that long.
4. Time `repeats` passes: words/s (whitespace words of the hypotheses) and target
   tokens/s (SentencePiece pieces of the hypotheses), with median, min, max and relative
   spread ((max - min) / median) across the passes, and the share of each pass's CPU time
   the hypervisor stole for other machines.
5. Score the first pass with sacrebleu (BLEU and chrF2, with signatures).
6. Latency: `latency_sentences` sentences spread evenly over the test set, translated one
   at a time (batch size 1): p50, p90 and p99 in milliseconds.
7. Peak resident memory of the process (and its resident memory right after the imports
   and right after loading the model); on CUDA, GPU memory.

The runner may pin the process to CPUs of its own (`NMT_BENCH_CPUS`); the record names
the CPUs its threads could run on.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from nmt import machine

# Pin first: a thread keeps the CPUs it was started on, and onnxruntime starts one when
# it is imported (below, through nmt.translate). CPUS: those this process may run on.
CPUS = machine.pin_from_environment()

import numpy as np  # noqa: E402

from nmt.bench.grid import Cell  # noqa: E402
from nmt.data.corpus import read_parallel  # noqa: E402
from nmt.scoring import score  # noqa: E402
from nmt.translate import load  # noqa: E402

log = logging.getLogger(__name__)

RSS_AFTER_IMPORTS_MB = machine.rss_mb()
TORCH_DTYPES = ("float32", "float16", "bfloat16")


def select_lines(
    sources: list[str], references: list[str], min_words: int, max_lines: int
) -> tuple[list[str], list[str]]:
    """The pairs whose source has at least `min_words` words; the first `max_lines` of them."""
    pairs = [
        (s, r) for s, r in zip(sources, references, strict=True) if len(s.split()) >= min_words
    ]
    if max_lines:
        pairs = pairs[:max_lines]
    if not pairs:
        raise ValueError(f"no test line has {min_words} or more source words")
    return [s for s, _ in pairs], [r for _, r in pairs]


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and relative spread ((max - min) / median) of per-pass rates."""
    median = statistics.median(values)
    return {
        "median": round(median, 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "spread": round((max(values) - min(values)) / median, 4) if median > 0 else 0.0,
        "runs": [round(v, 1) for v in values],
    }


def load_translator(cell: Cell):
    """The cell's translator, with its compute type (and a foreign model's options) applied."""
    options: dict[str, Any] = {"device": cell.device, "threads": cell.threads}
    options.update(cell.load_options())
    if cell.backend == "ctranslate2":
        options["compute_type"] = cell.compute_type
        options["inter_threads"] = cell.translators
    paths = [cell.path, *cell.ensemble] if cell.ensemble else cell.path
    translator = load(paths, backend=cell.backend, **options)
    if cell.backend == "pytorch" and cell.compute_type != "float32":
        import torch

        if cell.compute_type not in TORCH_DTYPES:
            raise ValueError(f"pytorch compute type must be one of {TORCH_DTYPES}")
        translator.model.to(getattr(torch, cell.compute_type))
    return translator


def effective_compute_type(translator, cell: Cell) -> str:
    """What the engine actually runs (CTranslate2 falls back when the device lacks a type)."""
    if cell.backend == "ctranslate2":
        return str(translator.translator.compute_type)
    if cell.backend == "pytorch":
        return str(next(translator.model.parameters()).dtype).removeprefix("torch.")
    info = getattr(translator, "info", None) or {}
    return str(info.get("quantization", cell.compute_type))


def engine_settings(translator, cell: Cell) -> dict[str, Any]:
    """The engine's own thread and batching settings, as it reports them."""
    if cell.backend == "ctranslate2":
        return {
            "intra_threads": translator.threads,
            "translators": translator.translator.num_translators,
            "exact_length_limits": translator.exact_length_limits,
        }
    if cell.backend == "pytorch":
        import torch

        return {
            "torch_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
        }
    return {}


def measure(cell: Cell) -> dict[str, Any]:
    """Run the protocol above and return the cell's record (without the runner's fields)."""
    started = time.perf_counter()
    load_before = machine.load_average()
    cuda = machine.CudaMemory() if cell.device == "cuda" else None
    t = time.perf_counter()
    translator = load_translator(cell)
    load_s = time.perf_counter() - t
    rss_after_load = machine.rss_mb()

    sources, references = select_lines(
        *read_parallel(cell.src, cell.ref), cell.min_words, cell.max_lines
    )
    options = decoding_options(cell)
    batches = [sources[i : i + cell.batch_size] for i in range(0, len(sources), cell.batch_size)]
    for batch in batches[: cell.warmup_batches]:
        translator.translate(batch, **options)
    rounds = rounds_per_pass(translator, batches, options, cell.min_pass_seconds)
    throughput, outputs = timed_passes(translator, batches, options, cell.repeats, rounds)
    latency = latency_ms(translator, sources, options, cell.latency_sentences)

    memory: dict[str, Any] = {
        "rss_after_imports_mb": RSS_AFTER_IMPORTS_MB,
        "rss_after_load_mb": rss_after_load,
        "peak_rss_mb": machine.peak_rss_mb(),
    }
    if cuda is not None:
        memory.update(cuda.report())
    return {
        "quality": {
            **score(outputs[0], references).as_dict(),
            "same_output_every_repeat": all(o == outputs[0] for o in outputs),
        },
        "throughput": {
            "sentences": len(sources),
            "source_words": sum(len(s.split()) for s in sources),
            **throughput,
            "batching": f"consecutive lines, {cell.batch_size} sentences per translate() call",
        },
        "latency_ms": latency,
        "memory": memory,
        "model": {
            "size_mb": round(cell.model_bytes / 2**20, 2),
            "load_s": round(load_s, 3),
            "compute_type": effective_compute_type(translator, cell),
            "engine": engine_settings(translator, cell),
        },
        "hardware": machine.hardware(cell.device),
        "versions": machine.versions(),
        "environment": machine.environment(),
        "cpus": machine.thread_cpus(),
        "load_average": [load_before, machine.load_average()],
        "wall_s": round(time.perf_counter() - started, 2),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def decoding_options(cell: Cell) -> dict[str, Any]:
    """Keyword arguments of `translate()` for this cell: the grid's decoding at the cell's
    beam (and the cell's vocabulary map, for CTranslate2)."""
    options: dict[str, Any] = {"decoding": replace(cell.decoding, beam_size=cell.beam_size)}
    if cell.use_vmap is not None:
        options["use_vmap"] = cell.use_vmap
    return options


def translate_all(translator, batches: list[list[str]], options: dict[str, Any]) -> list[str]:
    return [h for batch in batches for h in translator.translate(batch, **options)]


def rounds_per_pass(
    translator, batches: list[list[str]], options: dict[str, Any], min_seconds: float
) -> int:
    """How many times a timed pass translates the test set to last about `min_seconds`
    (1 if 0), from untimed passes: a second one when the first was short, as the first
    pays one-time costs (allocations, kernel selection) and would overstate a round."""
    if min_seconds <= 0:
        return 1

    def one_pass() -> float:
        t = time.perf_counter()
        translate_all(translator, batches, options)
        return time.perf_counter() - t

    seconds = one_pass()
    if seconds < min_seconds:
        seconds = min(seconds, one_pass())
    return max(1, math.ceil(min_seconds / seconds))


def timed_passes(
    translator,
    batches: list[list[str]],
    options: dict[str, Any],
    repeats: int,
    rounds: int = 1,
) -> tuple[dict[str, Any], list[list[str]]]:
    """Time `repeats` passes, each translating all batches `rounds` times; words/s and
    target tokens/s of each pass (counted outside the timed region), the CPU time stolen
    during each, and the hypotheses of each pass's first round."""
    seconds, outputs, stolen = [], [], []
    for _ in range(repeats):
        jiffies = machine.cpu_jiffies(CPUS)
        t = time.perf_counter()
        hyps = translate_all(translator, batches, options)
        for _ in range(rounds - 1):
            translate_all(translator, batches, options)
        seconds.append(time.perf_counter() - t)
        stolen.append(machine.steal_percent(jiffies, machine.cpu_jiffies(CPUS)))
        outputs.append(hyps)
    words = [rounds * sum(len(h.split()) for h in hyps) for hyps in outputs]
    tokens = [rounds * sum(map(len, translator.tokenizer.encode_pieces(hyps))) for hyps in outputs]
    return {
        "words": words[0] // rounds,
        "target_tokens": tokens[0] // rounds,
        "rounds_per_pass": rounds,
        "seconds": [round(s, 4) for s in seconds],
        "steal_percent": stolen,
        "words_per_s": spread([w / s for w, s in zip(words, seconds, strict=True)]),
        "target_tokens_per_s": spread([n / s for n, s in zip(tokens, seconds, strict=True)]),
    }, outputs


def latency_ms(
    translator, sources: list[str], options: dict[str, Any], count: int
) -> dict[str, Any]:
    """Translate `count` sentences spread evenly over `sources` one at a time: p50, p90,
    p99 and mean milliseconds per sentence."""
    k = min(count, len(sources))
    if k == 0:
        return {"sentences": 0}
    sample = [sources[i * len(sources) // k] for i in range(k)]
    latencies = []
    for line in sample:
        t = time.perf_counter()
        translator.translate([line], **options)
        latencies.append((time.perf_counter() - t) * 1000)
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
    return {
        "sentences": k,
        "source_words": sum(len(s.split()) for s in sample),
        "p50": round(float(p50), 2),
        "p90": round(float(p90), 2),
        "p99": round(float(p99), 2),
        "mean": round(float(np.mean(latencies)), 2),
    }


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    cell = Cell.from_dict(json.loads(sys.stdin.read()))
    record = measure(cell)
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
