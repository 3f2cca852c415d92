"""Translate a test set, write the hypotheses, score them with signatures, time it."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from nmt.data import read_parallel
from nmt.fileio import atomic_write_text
from nmt.scoring import score
from nmt.translate import load


def evaluate(
    model: str | Path,
    src: Path,
    ref: Path,
    output_dir: Path,
    beam_size: int = 4,
    max_batch_tokens: int = 4096,
    threads: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    sources, references = read_parallel(src, ref)
    translator = load(model, device=device, threads=threads)
    start = time.perf_counter()
    hyps = translator.translate(sources, beam_size=beam_size, max_batch_tokens=max_batch_tokens)
    seconds = time.perf_counter() - start
    s = score(hyps, references)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / "hyp.txt", "".join(h + "\n" for h in hyps))
    result = {
        **s.as_dict(),
        "model": str(getattr(translator, "source", model)),
        "backend": translator.backend,
        "src": str(src),
        "ref": str(ref),
        "sentences": len(sources),
        "beam_size": beam_size,
        "max_batch_tokens": max_batch_tokens,
        "device": device,
        "threads": torch.get_num_threads(),
        "seconds": round(seconds, 2),
        "cpu": platform.processor() or platform.machine(),
    }
    atomic_write_text(output_dir / "scores.json", json.dumps(result, indent=2) + "\n")
    return result
