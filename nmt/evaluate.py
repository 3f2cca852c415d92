"""Translate a test set, write the hypotheses, score them with signatures, time it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from nmt.data import read_parallel
from nmt.decoding import Decoding
from nmt.fileio import atomic_write_text
from nmt.machine import hardware
from nmt.scoring import score
from nmt.translate import load

HYPOTHESES = "hyp.txt"
SCORES = "scores.json"


def evaluate(
    model: str | Path,
    src: Path,
    ref: Path,
    output_dir: Path,
    beam_size: int = Decoding.beam_size,
    max_batch_tokens: int = Decoding.max_batch_tokens,
    threads: int = 0,
    device: str = "cpu",
    use_vmap: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Write `hyp.txt` and `scores.json` into `output_dir`. Those of an earlier evaluation
    are replaced only with `force`; a file there that no evaluation made, or that is the
    source or reference, never. `use_vmap` False: a CTranslate2 export decodes over the
    whole vocabulary even when it has a vocabulary map (the other backends have none)."""
    _check_output(output_dir, force, (src, ref))
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
    _check_output(output_dir, force, (src, ref))  # again: another process may have written
    atomic_write_text(output_dir / HYPOTHESES, "".join(h + "\n" for h in hyps), replace=force)
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
    atomic_write_text(output_dir / SCORES, json.dumps(result, indent=2) + "\n", replace=force)
    return result


def _check_output(output_dir: Path, force: bool, inputs: tuple[Path, ...]) -> None:
    outputs = [output_dir / HYPOTHESES, output_dir / SCORES]
    for out in outputs:
        if any(out.exists() and p.exists() and out.samefile(p) for p in inputs):
            raise FileExistsError(f"{out}: is an input of this evaluation; not replaced")
    existing = [out for out in outputs if out.exists() or out.is_symlink()]
    if not existing:
        return
    if not force:
        raise FileExistsError(f"{existing[0]}: already exists (use --force to replace it)")
    if not _is_scores(output_dir / SCORES):
        raise FileExistsError(
            f"{existing[0]}: not written by an evaluation (no {SCORES} of one beside it); "
            "--force replaces only an earlier evaluation's files: choose another folder"
        )


def _is_scores(path: Path) -> bool:
    try:
        return "bleu_signature" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False
