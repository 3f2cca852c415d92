"""A grid's model entry (`ModelEntry`) as the benchmark measures it: the backend that loads
it, the files that make it up on disk (its size, and what a rerun compares), the compute
types and vocabulary-map settings it can run with, and a foreign model's load options. Every
error is a `ConfigError` naming the entry's key (``models[2].compute_types[0]``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt.checkpoint import find_checkpoint
from nmt.config import ConfigError, check
from nmt.decoding import check_threads
from nmt.translate import BACKENDS

log = logging.getLogger(__name__)

# Compute types a backend can run, per device. CTranslate2 converts the export's weights
# to the requested type when it loads the model; PyTorch casts the model (`model.to`).
# Other backends (ONNX Runtime) run what was exported: their only compute type is "export".
COMPUTE_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "pytorch": {
        "cpu": ("float32", "bfloat16", "float16"),
        "cuda": ("float32", "float16", "bfloat16"),
    },
    "ctranslate2": {
        "cpu": ("float32", "int8", "int8_float32", "int16", "bfloat16", "int8_bfloat16"),
        "cuda": (
            "float32",
            "float16",
            "int8_float16",
            "bfloat16",
            "int8_bfloat16",
            "int8",
            "int8_float32",
        ),
    },
}
# What a model entry without `compute_types` is measured with.
DEFAULT_COMPUTE_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "pytorch": {"cpu": ("float32",), "cuda": ("float16",)},
    "ctranslate2": {"cpu": ("float32", "int8"), "cuda": ("float16", "int8_float16")},
}
EXPORT_COMPUTE_TYPE = "export"

# A foreign model's load options (`nmt.backends.foreign.load_foreign`), by grid key.
FOREIGN_OPTIONS = {
    "tokenizer": "tokenizer_files",
    "source_prefix": "source_prefix",
    "source_suffix": "source_suffix",
    "target_prefix": "target_prefix",
}


def foreign_load_options(settings: object) -> dict[str, Any]:
    """The `nmt.translate.load` options of those FOREIGN_OPTIONS that `settings` (a `Cell`,
    a deploy.json `Profile`: its attributes are FOREIGN_OPTIONS' keys) gives; one
    definition, so that a model loads from its profile as it did when it was measured."""
    given = {name: getattr(settings, key) for key, name in FOREIGN_OPTIONS.items()}
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in given.items()
        if value not in (None, ())
    }


_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ModelEntry:
    """One model artifact: a run folder or .pt checkpoint (PyTorch), an export folder or a
    model nmt did not make (`nmt.backends.foreign`); with `ensemble`, the further members
    of a PyTorch ensemble that `path` leads (one vocabulary, probabilities averaged per
    step, as `nmt-translate -m A -m B`)."""

    name: str
    path: str
    ensemble: tuple[str, ...] = ()
    backend: str = "auto"  # a key of nmt.translate.BACKENDS, or recognised from the path
    compute_types: tuple[str, ...] = ()  # empty: DEFAULT_COMPUTE_TYPES for the device
    use_vmap: tuple[bool, ...] = ()  # CTranslate2; empty: [false, true] if it ships a vmap
    translators: int = 1  # CTranslate2: parallel translators (inter_threads) of `threads` each
    threads: tuple[int, ...] = ()  # threads per translator for this model; empty: the grid's
    # Variables set in this model's cell processes, after the thread variables: engine
    # switches such as CT2_USE_MKL or CT2_USE_EXPERIMENTAL_PACKED_GEMM, to compare settings
    # of one model as two entries.
    environment: dict[str, str] = field(default_factory=dict)
    # A model nmt did not make (backend "foreign", as nmt-translate --tokenizer,
    # --source-prefix, ...): its tokenizer files (one joint, or the source's then the
    # target's) and the tokens around each sentence, where its folder does not tell
    # (unset: as recognised; "": none).
    tokenizer: tuple[str, ...] = ()
    source_prefix: str | None = None
    source_suffix: str | None = None
    target_prefix: str | None = None

    def __post_init__(self) -> None:
        check(all(t >= 1 for t in self.threads), "threads", "values must be >= 1")
        for name in self.environment:
            check(bool(_VARIABLE.match(name)), "environment", f"not a variable name: {name!r}")
        check(
            len(self.tokenizer) <= 2,
            "tokenizer",
            f"one joint tokenizer, or the source's then the target's; got {len(self.tokenizer)}",
        )


def resolve_model(entry: ModelEntry, key: str) -> tuple[ModelEntry, str, list[Path]]:
    """The entry, its backend and the files that make up the model on disk."""
    path = Path(entry.path)
    if not path.exists():
        raise ConfigError(f"{key}.path: {path} does not exist")
    backend = entry.backend
    if backend == "auto":
        found = [name for name, (recognise, _) in BACKENDS.items() if recognise(path)]
        if not found:
            raise ConfigError(
                f"{key}.path: {path} is not a model any backend recognises "
                f"(backends: {', '.join(BACKENDS)})"
            )
        backend = found[0]
    elif backend not in BACKENDS:
        raise ConfigError(
            f"{key}.backend: unknown backend {backend!r} (known: auto, {', '.join(BACKENDS)})"
        )
    if entry.ensemble and backend != "pytorch":
        raise ConfigError(f"{key}.ensemble: ensembles are PyTorch models ({path} is {backend})")
    if backend == "pytorch":
        files = [find_checkpoint(path)]
        for i, member in enumerate(entry.ensemble):
            if not Path(member).exists():
                raise ConfigError(f"{key}.ensemble[{i}]: {member} does not exist")
            files.append(find_checkpoint(member))
    elif path.is_file():
        files = [path]
    else:
        files = sorted(f for f in path.rglob("*") if f.is_file())
    if not files:
        raise ConfigError(f"{key}.path: {path} holds no files")
    for name in FOREIGN_OPTIONS:
        if getattr(entry, name) not in (None, ()) and backend != "foreign":
            raise ConfigError(f"{key}.{name}: applies to foreign models only ({path} is {backend})")
    for i, tokenizer in enumerate(map(Path, entry.tokenizer)):
        if not tokenizer.is_file():
            missing = "is not a file" if tokenizer.exists() else "does not exist"
            raise ConfigError(f"{key}.tokenizer[{i}]: {tokenizer} {missing}")
        if tokenizer.resolve() not in {f.resolve() for f in files}:
            files.append(tokenizer)  # part of the model as measured: size on disk, mtime
    for i, ct in enumerate(entry.compute_types):
        known = {c for per_device in COMPUTE_TYPES.get(backend, {}).values() for c in per_device}
        if not known:
            raise ConfigError(
                f"{key}.compute_types: {backend} runs the model as exported; export each "
                "precision to its own folder and list each as a model"
            )
        if ct not in known:
            raise ConfigError(
                f"{key}.compute_types[{i}]: unknown compute type {ct!r} for {backend} "
                f"(known: {', '.join(sorted(known))})"
            )
    if entry.translators != 1:
        check_threads(entry.translators, f"{key}.translators", minimum=1)
        if backend != "ctranslate2":
            raise ConfigError(f"{key}.translators: applies to CTranslate2 exports only")
    if entry.use_vmap:
        if backend != "ctranslate2":
            raise ConfigError(f"{key}.use_vmap: applies to CTranslate2 exports only")
        if True in entry.use_vmap and not (path / "vmap.txt").is_file():
            raise ConfigError(f"{key}.use_vmap: {path} has no vmap.txt (export with --vmap)")
    return entry, backend, files


def runnable_compute_types(entry: ModelEntry, backend: str, device: str) -> list[str]:
    """The entry's compute types that `backend` can run on `device`, or its defaults."""
    if backend not in COMPUTE_TYPES:
        return [EXPORT_COMPUTE_TYPE]
    if not entry.compute_types:
        return list(DEFAULT_COMPUTE_TYPES[backend][device])
    runnable = [c for c in entry.compute_types if c in COMPUTE_TYPES[backend][device]]
    dropped = [c for c in entry.compute_types if c not in runnable]
    if dropped:
        log.info(
            "%s: %s not measured on %s (%s cannot run them there)",
            entry.name,
            ", ".join(dropped),
            device,
            backend,
        )
    return runnable


def vmap_settings(entry: ModelEntry, backend: str) -> list[bool | None]:
    if backend != "ctranslate2":
        return [None]
    if entry.use_vmap:
        return list(dict.fromkeys(entry.use_vmap))
    return [False, True] if (Path(entry.path) / "vmap.txt").is_file() else [False]
