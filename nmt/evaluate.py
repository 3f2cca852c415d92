"""Translate a test set, write the hypotheses, score them with signatures, time it."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from nmt.data.corpus import read_parallel
from nmt.decoding import Decoding
from nmt.fileio import atomic_write_text
from nmt.machine import hardware
from nmt.outputs import claim
from nmt.scoring import score
from nmt.translate import load

HYPOTHESES = "hyp.txt"
SCORES = "scores.json"


def evaluate(
    model: str | Path,
    src: Path,
    ref: Path,
    output_dir: Path,
    decoding: Decoding | None = None,
    threads: int = 0,
    device: str = "cpu",
    use_vmap: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Write `hyp.txt` and `scores.json` into the folder `output_dir`. An earlier evaluation's
    folder is replaced only with `force`; any other folder, or one that is, holds or lies
    inside the model, source or reference, never (`nmt.outputs`). `use_vmap` False: a
    CTranslate2 export decodes over the whole vocabulary even when it has a vocabulary map
    (the other backends have none). `decoding`: `Decoding()` by default."""
    output = claim(output_dir, "nmt-evaluate", inputs=_inputs(model, src, ref), force=force)
    decoding = decoding or Decoding()
    sources, references = read_parallel(src, ref)
    translator = load(model, device=device, threads=threads)
    extra = {}
    if translator.backend == "ctranslate2":
        extra["use_vmap"] = use_vmap and translator.has_vmap
    start = time.perf_counter()
    hyps = translator.translate(sources, decoding, **extra)
    seconds = time.perf_counter() - start
    s = score(hyps, references)
    claim(output_dir, "nmt-evaluate", inputs=_inputs(model, src, ref), force=output.existed)
    output.make()  # checked again: another process may have written meanwhile
    atomic_write_text(output_dir / HYPOTHESES, "".join(h + "\n" for h in hyps))
    result = {
        **s.as_dict(),
        "model": str(getattr(translator, "source", model)),
        "backend": translator.backend,
        "src": str(src),
        "ref": str(ref),
        "sentences": len(sources),
        "beam_size": decoding.beam_size,
        "vocabulary_map": bool(extra.get("use_vmap")),
        "max_batch_tokens": decoding.max_batch_tokens,
        "decoding": asdict(decoding),
        "device": device,
        "threads": torch.get_num_threads(),
        "seconds": round(seconds, 2),
        "hardware": hardware(device),
    }
    atomic_write_text(output_dir / SCORES, json.dumps(result, indent=2) + "\n")
    return result


def _inputs(model: str | Path | list, src: Path, ref: Path) -> list[str | Path]:
    models = model if isinstance(model, list | tuple) else [model]
    return [*models, src, ref]
