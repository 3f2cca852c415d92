"""Where a distilled corpus comes from: the teacher (`teacher_info`: its export, checkpoint
or foreign model info and a fingerprint), its dev BLEU where its run recorded one, the machine it
translated on, the copies of the validation and test files, and `provenance.json` (teacher,
backend, decoding settings, versions, source files with sha256, outputs, date)."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nmt.config import DataConfig
from nmt.data.datasets import DatasetError, split_paths
from nmt.distill.config import DistillConfig
from nmt.fileio import atomic_write_text, file_sha256
from nmt.weights import WEIGHTS_FILE

log = logging.getLogger(__name__)


def teacher_info(teacher: str | Path | list[str]) -> dict[str, Any]:
    """Where the teacher comes from: its export or checkpoint info and a fingerprint
    (sha256 over its model files) that identifies it in the job and the provenance; for an
    ensemble, its members' and a fingerprint of them all. A model nmt did not make (a
    CTranslate2 folder, an Argos package, a Hugging Face folder: `nmt.backends.foreign`)
    is described under `foreign`: its kind and files with sha256 (a Hugging Face folder is
    converted here, once, so that the converted files are recorded too). Its tokenizer is
    the teacher's own: the distilled folder holds text only, and a student trained on it
    trains its own tokenizer."""
    if isinstance(teacher, list):
        members = [teacher_info(t) for t in teacher]
        digest = hashlib.sha256("".join(m["sha256"] for m in members).encode()).hexdigest()
        return {
            "path": " + ".join(m["path"] for m in members),
            "members": members,
            "sha256": digest,
        }
    from nmt.backends.foreign import is_foreign, model_info
    from nmt.checkpoint import find_checkpoint, load_checkpoint
    from nmt.export.folder import EXPORT_INFO

    path = Path(teacher)
    if is_foreign(path):  # a model nmt did not make: its kind and files (see model_info)
        foreign = model_info(path)
        info = {"foreign": foreign, "sha256": foreign["sha256"]}
    elif path.is_dir() and (path / EXPORT_INFO).is_file():
        files = sorted(f for f in path.rglob("*") if f.is_file())
        info: dict[str, Any] = {"export": json.loads((path / EXPORT_INFO).read_text())}
        digest = hashlib.sha256()
        for f in files:
            digest.update(f"{f.relative_to(path)}\0{file_sha256(f)}\n".encode())
        info["sha256"] = digest.hexdigest()
    else:
        ckpt = find_checkpoint(path)
        state = load_checkpoint(ckpt)
        info = {
            "checkpoint": {
                "file": str(ckpt.resolve()),
                "step": state.get("step"),
                "nmt_version": state.get("nmt_version"),
                "model_config": state.get("model_config"),
                "tokenizer_sha256": state.get("tokenizer_sha256"),
                "averaged_from": state.get("averaged_from"),
                "validation": state.get("validation"),
            },
            "sha256": file_sha256(ckpt),
        }
    return {"path": str(path.resolve()), **info}


def checkpoint_dev_bleu(checkpoint: str | Path) -> float | None:
    """The dev BLEU of a run's model as its run's summary.json records it: `averaged` for
    averaged.pt, `best_valid_bleu` for best.pt and for the weights of an adopted model
    (`nmt.training.adopt`). None when unknown: no summary beside it (a run not finished, a copied
    file), another file (last.pt, a step snapshot), or a run that validated on loss alone
    (train.valid_bleu: false)."""
    path = Path(checkpoint)
    try:
        summary = json.loads((path.parent / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    if path.name == "averaged.pt":
        averaged = summary.get("averaged")
        bleu = averaged.get("valid_bleu") if isinstance(averaged, dict) else None
    elif path.name == "best.pt" or (path.name == WEIGHTS_FILE and "adopted" in summary):
        bleu = summary.get("best_valid_bleu")  # -1 when no validation measured BLEU
    else:
        return None
    return float(bleu) if isinstance(bleu, int | float) and bleu >= 0 else None


def teacher_dev_bleu(teacher: dict[str, Any]) -> float | None:
    """`checkpoint_dev_bleu` of a `teacher_info`'s checkpoint, or its export's source."""
    source = teacher.get("checkpoint", {}).get("file") or teacher.get("export", {}).get(
        "source_checkpoint"
    )
    return checkpoint_dev_bleu(source) if source else None


def copy_splits(data: DataConfig, out: Path) -> list[str]:
    """Copy the validation and test files beside the distilled train files."""
    copied = []
    for split in dict.fromkeys((data.valid, data.test)):
        try:
            paths = split_paths(data, split)
        except DatasetError as e:
            log.warning("not copying split %s: %s", split, e)
            continue
        if not all(p.is_file() for p in paths):
            log.warning("not copying split %s: %s not found", split, " or ".join(map(str, paths)))
            continue
        for path, lang in zip(paths, (data.src_lang, data.tgt_lang), strict=True):
            atomic_write_text(out / f"{split}.{lang}", path.read_text(encoding="utf-8"))
            copied.append(f"{split}.{lang}")
    return copied


def hardware(device: str) -> dict[str, Any]:
    """The machine that translates on `device` (`nmt.machine.hardware`), for stats.json."""
    from nmt import machine

    return machine.hardware(device)


def provenance_record(
    teacher: dict[str, Any],
    config: DistillConfig,
    data: DataConfig,
    src_path: Path,
    tgt_path: Path,
    out: Path,
    outputs: list[str],
) -> dict[str, Any]:
    """The content of provenance.json: `teacher` (a `teacher_info`) with the backend that
    translated, the settings, the source files and the `outputs` in `out` with sha256."""
    from nmt.machine import versions

    backend = config.backend
    if backend == "auto":
        from nmt.translate import BACKENDS

        backend = next((n for n, (ok, _) in BACKENDS.items() if ok(Path(teacher["path"]))), "?")
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else None,
        "teacher": {**teacher, "backend": backend, "compute_type": config.compute_type},
        "decoding": config.decoding_options(),
        "workers": config.workers,
        "threads": config.threads,
        "source": {
            "data": asdict(data),
            "max_lines": config.max_lines,
            "files": {str(p): file_sha256(p) for p in (src_path, tgt_path)},
        },
        "filters": asdict(config.filters),
        "mix": config.mix,
        "nbest": {"n": config.nbest, "select": config.select},
        "outputs": {name: file_sha256(out / name) for name in outputs},
        "versions": versions(),
    }
