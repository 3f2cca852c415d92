"""Hugging Face seq2seq folders (Marian/OPUS-MT, M2M-100, NLLB, mBART, ...) converted to
CTranslate2 on the fly, with CTranslate2's own converter (`TransformersConverter`), which
needs `transformers` (`pip install nmt[convert]`; nmt's own models never do).

Nothing is downloaded: the folder must hold the model (`config.json`, safetensors weights:
a pickled `pytorch_model.bin` is refused) and its tokenizer files, and the conversion runs
with the Hub offline (`HF_HUB_OFFLINE=1`, `local_files_only=True`). The converted model is
kept in `cache_dir() / "converted" / <sha256 of the source files>/`, built aside and
published by one rename, and reused by every later load of the same files; it is a foreign
CTranslate2 folder (`nmt.backends.foreign`) holding the tokenizer files too and
`CONVERTED_INFO`, which records the source folder and its files' sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nmt.backends.argos_package import cache_dir
from nmt.config import ConfigError
from nmt.fileio import file_sha256

log = logging.getLogger(__name__)

CONVERTED_INFO = "nmt_converted.json"
# The encoder-decoder model types CTranslate2's TransformersConverter converts (NLLB's
# config says m2m_100).
MODEL_TYPES = ("marian", "m2m_100", "mbart", "bart", "pegasus", "t5", "mt5")
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# Tokenizer files copied beside the converted model, so that it translates on its own.
TOKENIZER_FILES = (
    "source.spm",
    "target.spm",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "spm.model",
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def hf_model_type(path: Path) -> str | None:
    """The `model_type` of a Hugging Face model folder's `config.json`, or None (judged by
    its files, without transformers)."""
    file = path / "config.json"
    if not file.is_file() or (path / "model.bin").exists():  # model.bin: CTranslate2's
        return None
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = config.get("model_type") if isinstance(config, dict) else None
    return kind if isinstance(kind, str) else None


def is_hf_seq2seq(path: Path) -> bool:
    """A Hugging Face folder of a model type CTranslate2 converts, with weights."""
    return hf_model_type(path) in MODEL_TYPES and any(
        (path / name).is_file() for name in (*SAFE_WEIGHTS, *PICKLED_WEIGHTS)
    )


def source_files(path: Path) -> dict[str, str]:
    """The folder's files (top level) with their sha256, by name: what the conversion
    reads, and so what identifies it."""
    return {
        f.name: file_sha256(f)
        for f in sorted(path.iterdir())
        if f.is_file() and not f.name.startswith(".")
    }


def fingerprint(files: dict[str, str]) -> str:
    """One sha256 over the names and sha256 of `files`."""
    digest = hashlib.sha256()
    for name, sha in sorted(files.items()):
        digest.update(f"{name}\0{sha}\n".encode())
    return digest.hexdigest()


def converted(path: str | Path) -> Path:
    """The CTranslate2 folder of the Hugging Face model folder `path`: from the cache, or
    converted now (see the module's docstring). ConfigError, one line, when the folder
    cannot be converted here: pickled weights only, transformers missing, or the
    converter's own refusal."""
    path = Path(path).resolve()
    if not any((path / name).is_file() for name in SAFE_WEIGHTS):
        found = next((n for n in PICKLED_WEIGHTS if (path / n).is_file()), None)
        why = f"its weights are pickled ({found})" if found else "no model.safetensors"
        raise ConfigError(
            f"{path}: {why}; nmt converts safetensors weights only (save the model with "
            "save_pretrained(..., safe_serialization=True))"
        )
    files = source_files(path)
    target = cache_dir() / "converted" / fingerprint(files)
    if (target / CONVERTED_INFO).is_file() and (target / "model.bin").is_file():
        return target
    _convert(path, files, target)
    return target


def _convert(path: Path, files: dict[str, str], target: Path) -> None:
    """Convert `path` into `target`, built aside and published by one rename."""
    try:
        import transformers  # noqa: F401  (the converter imports it; say so first)
    except ImportError:
        raise ConfigError(
            f"{path}: converting a Hugging Face model needs transformers: "
            "pip install 'nmt[convert]'"
        ) from None
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    class OfflineConverter(TransformersConverter):
        """CTranslate2's converter, never reaching the Hub nor unpickling weights."""

        def load_model(self, model_class, model_name_or_path, **kwargs):
            kwargs.update(local_files_only=True, use_safetensors=True)
            return super().load_model(model_class, model_name_or_path, **kwargs)

        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return super().load_tokenizer(
                tokenizer_class, model_name_or_path, local_files_only=True, **kwargs
            )

    copy = [name for name in TOKENIZER_FILES if (path / name).is_file()]
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name[:16]}-", dir=target.parent))
    log.info("converting %s to CTranslate2 -> %s", path, target)
    try:
        staged = work / "model"
        offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        saved = {k: os.environ.get(k) for k in offline}
        os.environ.update(offline)
        try:
            OfflineConverter(str(path), copy_files=copy).convert(str(staged))
        except (OSError, ValueError, KeyError, NotImplementedError) as e:
            reason = " ".join(str(e).split())[:300]
            raise ConfigError(f"{path}: CTranslate2 cannot convert this model ({reason})") from None
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        info: dict[str, Any] = {
            "source": str(path),
            "model_type": hf_model_type(path),
            "source_files": files,
            "ctranslate2_version": ctranslate2.__version__,
            "transformers_version": transformers.__version__,
        }
        (staged / CONVERTED_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        try:
            staged.rename(target)
        except OSError:  # another process published it meanwhile, or a torn one is there
            if not (target / CONVERTED_INFO).is_file():
                shutil.rmtree(target, ignore_errors=True)
                staged.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_converted_info(folder: Path) -> dict[str, Any] | None:
    """`CONVERTED_INFO` of a folder `converted` made, or None."""
    try:
        value = json.loads((folder / CONVERTED_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
