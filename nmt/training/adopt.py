"""A trained model adopted as a pipeline's teacher: a run folder made from a weights folder.

`nmt-pipeline` can distil from a model trained elsewhere (`teacher: {model: PATH}`, e.g. a
committed member under models/multi30k-tiny/) instead of training a teacher. The stages
after the teacher read run folders, so `adopt` makes one without training:

    RUN_DIR/model.safetensors   the weights, copied as they are (no pickle: data only)
    RUN_DIR/spm.model           their tokenizer (checked against the weights' sha256)
    RUN_DIR/config.yaml         the run config, with the model config the weights carry
    RUN_DIR/summary.json        `adopted` (where from, its provenance), `checkpoint`, the
                                parameter count and the dev scores measured here (greedy
                                BLEU and chrF2 with signatures): teacher_min_bleu reads them

The dev scores are measured, not copied from the source: the same check applies to an
adopted teacher as to a trained one.

A model nmt did not make (`nmt.backends.foreign`: a CTranslate2 folder with its own
tokenizer, an Argos package, a Hugging Face folder) is not copied: nmt cannot train or
export it, and distillation translates with it where it is. `adopt_foreign` records it:

    RUN_DIR/summary.json        `adopted` (where from; `foreign`: its kind and files with
                                sha256, as `nmt.backends.foreign.model_info` gives them; the
                                options it loads with) and the dev scores measured here by
                                translating the dev split greedily through it
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from nmt import __version__
from nmt.backends.base import Translator
from nmt.checkpoint import model_from_checkpoint
from nmt.config import ModelConfig, RunConfig, from_dict, replace
from nmt.data.corpus import read_parallel
from nmt.data.datasets import split_paths
from nmt.decoding import Decoding
from nmt.fileio import atomic_write_bytes, atomic_write_text, file_sha256
from nmt.machine import hardware
from nmt.outputs import claim
from nmt.scoring import Scores, score
from nmt.tokenizer import Tokenizer
from nmt.weights import TOKENIZER_FILE, WEIGHTS_FILE, read_weights

log = logging.getLogger(__name__)

SUMMARY = "summary.json"


def adopt(source: str | Path, run: RunConfig) -> dict[str, Any]:
    """Make `run.run_dir` a finished run folder holding the weights folder `source`; its
    dev set (`run.data.valid`) is translated greedily to score it. Returns the summary."""
    source = Path(source)
    state = read_weights(source)  # checks format, tokenizer hash; raises WeightsError
    run_dir = claim(run.run_dir, "nmt-train", inputs=[source], resumable=True).make()
    weights = source if source.name == WEIGHTS_FILE else source / WEIGHTS_FILE
    atomic_write_bytes(run_dir / WEIGHTS_FILE, weights.read_bytes())
    atomic_write_bytes(run_dir / TOKENIZER_FILE, state["tokenizer_model"])
    model_config = from_dict(ModelConfig, state["model_config"], "model")
    tokenizer = replace(run.tokenizer, model=str(run_dir / TOKENIZER_FILE))
    run = replace(run, model=model_config, tokenizer=tokenizer)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(run.to_dict(), sort_keys=False))

    model = model_from_checkpoint(state)
    start = time.perf_counter()
    valid = dev_scores(model, Tokenizer.from_file(run_dir / TOKENIZER_FILE), run)
    provenance = state["provenance"]
    summary = {
        "nmt_version": __version__,
        "torch_version": torch.__version__,
        "adopted": {
            "source": str(source),
            "sha256": file_sha256(weights),
            "weights_dtype": state["weights_dtype"],
            "provenance": provenance,
        },
        "stop_reason": "adopted",
        "steps": provenance.get("step", 0),
        "wall_time_s": 0.0,
        "mean_tgt_tokens_per_s": 0.0,
        "precision": state["weights_dtype"],
        "threads": torch.get_num_threads(),
        "hardware": hardware("cpu"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "best_valid_bleu": valid["valid_bleu"],
        "validations": [{"step": provenance.get("step", 0), **valid}],
        "dev_seconds": round(time.perf_counter() - start, 1),
        "checkpoint": WEIGHTS_FILE,
    }
    atomic_write_text(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    log.info(
        "%s: adopted %s (%s parameters), dev BLEU %.2f greedy",
        run_dir,
        source,
        f"{summary['parameters']:,}",
        valid["valid_bleu"],
    )
    return summary


def adopt_foreign(source: str | Path, run: RunConfig, **options: Any) -> dict[str, Any]:
    """Make `run.run_dir` the record of the foreign model `source` (see the module's
    docstring), loaded with `options` (`nmt.translate.load`'s: device, threads,
    compute_type, tokenizer_files, source_prefix, ...); its dev set (`run.data.valid`) is
    translated greedily to score it. Returns the summary."""
    from nmt.backends.foreign import model_info
    from nmt.translate import load

    source = Path(source)
    translator = load(source, backend="foreign", **options)  # a ConfigError names the option
    run_dir = claim(run.run_dir, "nmt-train", inputs=[source], resumable=True).make()
    info = model_info(source)
    start = time.perf_counter()
    valid = translator_dev_scores(translator, run)
    summary = {
        "nmt_version": __version__,
        "adopted": {
            "source": str(source),
            "sha256": info["sha256"],
            "foreign": info,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        },
        "stop_reason": "adopted",
        "steps": 0,
        "threads": translator.threads,
        "hardware": hardware(translator.device),
        "best_valid_bleu": valid["valid_bleu"],
        "validations": [{"step": 0, **valid}],
        "dev_seconds": round(time.perf_counter() - start, 1),
    }
    atomic_write_text(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    log.info(
        "%s: recorded %s (%s, not made by nmt), dev BLEU %.2f greedy",
        run_dir,
        source,
        info["kind"],
        valid["valid_bleu"],
    )
    return summary


@torch.no_grad()
def dev_scores(model: torch.nn.Module, tokenizer: Tokenizer, run: RunConfig) -> dict[str, Any]:
    """Greedy BLEU and chrF2 of `model` on the run's dev split, as training validates."""
    from nmt.training.validation import greedy_scores

    sources, references = read_parallel(*split_paths(run.data, run.data.valid))
    return _valid(greedy_scores(model, tokenizer, sources, references, Decoding.max_batch_tokens))


def translator_dev_scores(translator: Translator, run: RunConfig) -> dict[str, Any]:
    """Greedy BLEU and chrF2 of any translator on the run's dev split, decoded as
    `dev_scores` decodes (greedy, batches of the default tokens)."""
    sources, references = read_parallel(*split_paths(run.data, run.data.valid))
    hyps = translator.translate(sources, beam_size=1, max_batch_tokens=Decoding.max_batch_tokens)
    return _valid(score(hyps, references))


def _valid(s: Scores) -> dict[str, Any]:
    """Scores as a validation record names them."""
    return {
        "valid_bleu": round(s.bleu, 2),
        "valid_chrf": round(s.chrf, 2),
        "bleu_signature": s.bleu_signature,
        "chrf_signature": s.chrf_signature,
    }
