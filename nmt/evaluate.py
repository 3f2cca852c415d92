"""Translate a test set, write the hypotheses, score them with signatures, time it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from nmt.bench.machine import hardware
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
    use_vmap: bool = True,
) -> dict[str, Any]:
    """`use_vmap` False: a CTranslate2 export decodes over the whole vocabulary even when it
    has a vocabulary map (the other backends have none)."""
    sources, references = read_parallel(src, ref)
    translator = load(model, device=device, threads=threads)
    extra = {}
    if translator.backend == "ctranslate2":
        extra["use_vmap"] = use_vmap and translator.has_vmap
    start = time.perf_counter()
    hyps = translator.translate(
        sources, beam_size=beam_size, max_batch_tokens=max_batch_tokens, **extra
    )
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
        "vocabulary_map": bool(extra.get("use_vmap")),
        "max_batch_tokens": max_batch_tokens,
        "device": device,
        "threads": torch.get_num_threads(),
        "seconds": round(seconds, 2),
        "hardware": hardware(device),
    }
    atomic_write_text(output_dir / "scores.json", json.dumps(result, indent=2) + "\n")
    return result
