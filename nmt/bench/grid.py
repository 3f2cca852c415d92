"""The benchmark grid: a YAML file of models, test sets and axes, expanded into cells.

`BenchConfig` is loaded from YAML and validated on construction, like `nmt.config`: an
unknown key, a value of the wrong type or an impossible setting is a `ConfigError` naming
the key (``models[1].compute_types[0]``). `expand_cells` then resolves model paths,
backends and test-set files and yields one `Cell` per combination of

    test set x device x model x compute type x vocabulary map x threads x beam x batch size.

A cell is a plain frozen record of every setting its measurement depends on; its
`cell_id` names it for people (and matches cells across runs for `--compare`), its
`spec_hash` identifies the exact measurement (paths, model files, protocol), so that a
rerun skips what is already measured.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt.bench.models import (
    FOREIGN_OPTIONS,
    ModelEntry,
    foreign_load_options,
    resolve_model,
    runnable_compute_types,
    vmap_settings,
)
from nmt.config import (
    ConfigError,
    apply_overrides,
    check,
    check_name,
    check_number,
    from_dict,
    load_yaml,
)
from nmt.data.datasets import DATASETS, get_file
from nmt.decoding import Decoding

log = logging.getLogger(__name__)

MIN_REPEATS = 3
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class TestSet:
    """A registered dataset split (`dataset` + `split`) or explicit `src` and `ref` files;
    then the lines with at least `min_words` source words, the first `max_lines` of them."""

    name: str
    dataset: str = ""
    split: str = ""
    src: str = ""
    ref: str = ""
    src_lang: str = "en"
    tgt_lang: str = "de"
    min_words: int = 0
    max_lines: int = 0  # 0: all

    def __post_init__(self) -> None:
        named = bool(self.dataset or self.split)
        files = bool(self.src or self.ref)
        check(named != files, "dataset", "give either dataset and split, or src and ref")
        if named:
            check(bool(self.dataset and self.split), "split", "dataset needs a split")
            check(
                self.dataset in DATASETS,
                "dataset",
                f"unknown dataset {self.dataset!r} (known: {', '.join(DATASETS)})",
            )
        else:
            check(bool(self.src and self.ref), "ref", "src needs ref and ref needs src")
        check(self.min_words >= 0, "min_words", "must be >= 0")
        check(self.max_lines >= 0, "max_lines", "must be >= 0 (0: all lines)")


@dataclass(frozen=True)
class Grid:
    """The axes every model is measured along."""

    devices: tuple[str, ...] = ("cpu",)
    beam_sizes: tuple[int, ...] = (4,)
    batch_sizes: tuple[int, ...] = (32,)  # sentences per translate() call
    threads: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        for name in ("devices", "beam_sizes", "batch_sizes", "threads"):
            values = getattr(self, name)
            check(len(values) > 0, name, "must list at least one value")
            check(len(set(values)) == len(values), name, f"lists a value twice: {list(values)}")
        for d in self.devices:
            check(d in DEVICES, "devices", f"must be cpu or cuda, got {d!r}")
        for name in ("beam_sizes", "batch_sizes", "threads"):
            check(all(v >= 1 for v in getattr(self, name)), name, "values must be >= 1")


BENCH_BATCH_TOKENS = 1_000_000  # so that each batch of `batch_size` sentences is one batch


def bench_decoding() -> Decoding:
    """The grid's `decoding:` defaults: `nmt.decoding.Decoding`'s, with batches bounded by
    the grid's `batch_sizes` (sentences) rather than tokens; the beam is each cell's."""
    return Decoding(beam_size=1, max_batch_tokens=BENCH_BATCH_TOKENS)


@dataclass(frozen=True)
class BenchConfig:
    """Everything `nmt-bench` needs; see benchmarks/multi30k.yaml."""

    models: tuple[ModelEntry, ...]
    test_sets: tuple[TestSet, ...]
    name: str = "bench"
    output_dir: str = ""  # default: benchmarks/results/<name>
    data_dir: str = ""  # test-set files (else $NMT_DATA_DIR, else the download cache)
    grid: Grid = field(default_factory=Grid)
    decoding: Decoding = field(default_factory=bench_decoding)  # every cell's; beams: grid
    repeats: int = MIN_REPEATS  # timed passes over the test set
    warmup_batches: int = 2  # untimed batches translated first
    # A timed pass translates the test set as many times as it takes to last this long
    # (counted on an untimed full pass first): short passes are at the mercy of every
    # hiccup of the machine. 0: one round per pass, no untimed full pass.
    min_pass_seconds: float = 5.0
    pin_cpus: bool = True  # pin each cell to its own CPUs when it needs fewer than all
    latency_sentences: int = 100  # translated one at a time for latency (0: skip)
    cell_timeout_minutes: float = 30.0
    time_budget_minutes: float = 0.0  # stop starting cells after this long (0: no limit)

    def __post_init__(self) -> None:
        check(
            self.decoding.beam_size == 1,
            "decoding.beam_size",
            "the beams are the grid's (grid.beam_sizes)",
        )
        check_name(self.name, "name")
        check(len(self.models) > 0, "models", "must list at least one model")
        check(len(self.test_sets) > 0, "test_sets", "must list at least one test set")
        for key, items in (("models", self.models), ("test_sets", self.test_sets)):
            names = [item.name for item in items]
            for i, name in enumerate(names):
                check_name(name, f"{key}[{i}].name")
                check(names.index(name) == i, f"{key}[{i}].name", f"{name!r} is used twice")
        check(self.repeats >= 1, "repeats", "must be >= 1")
        check(self.warmup_batches >= 0, "warmup_batches", "must be >= 0")
        check_number(self.min_pass_seconds, "min_pass_seconds", ">= 0", " (0: one round)")
        check(self.latency_sentences >= 0, "latency_sentences", "must be >= 0")
        check_number(self.cell_timeout_minutes, "cell_timeout_minutes", "> 0")
        check_number(self.time_budget_minutes, "time_budget_minutes", ">= 0", " (0: no limit)")


@dataclass(frozen=True)
class Cell:
    """One measurement: every setting it depends on, in JSON-friendly types."""

    model: str
    path: str
    backend: str
    compute_type: str
    use_vmap: bool | None  # None: not a CTranslate2 model
    device: str
    threads: int
    beam_size: int
    batch_size: int
    test_set: str
    src: str
    ref: str
    min_words: int
    max_lines: int
    decoding: Decoding
    repeats: int
    warmup_batches: int
    latency_sentences: int
    model_files: tuple[str, ...]  # what "size on disk" counts
    model_bytes: int
    model_mtime: float  # newest of model_files: a re-exported model is measured again
    translators: int = 1  # CTranslate2 translators working in parallel, `threads` each
    min_pass_seconds: float = 0.0  # see BenchConfig
    pin_cpus: bool = False
    environment: dict[str, str] = field(default_factory=dict)  # see ModelEntry
    ensemble: tuple[str, ...] = ()  # the further members' paths (see ModelEntry)
    tokenizer: tuple[str, ...] = ()  # a foreign model's load options (see ModelEntry)
    source_prefix: str | None = None
    source_suffix: str | None = None
    target_prefix: str | None = None

    @property
    def thread_layout(self) -> str:
        """`threads`, or `threads x translators` when CTranslate2 runs several."""
        return f"{self.threads}x{self.translators}" if self.translators > 1 else f"{self.threads}"

    @property
    def cell_id(self) -> str:
        """A readable name, stable across runs of the same grid: `--compare` matches it."""
        vmap = "" if self.use_vmap is None else f" vmap={'on' if self.use_vmap else 'off'}"
        return (
            f"{self.test_set} {self.device} {self.model} {self.backend} {self.compute_type}"
            f"{vmap} t{self.thread_layout} beam{self.beam_size} bs{self.batch_size}"
        )

    @property
    def spec_hash(self) -> str:
        spec = self.to_dict()
        for key in _LATER_KEYS:  # cells measured before these keys existed keep their hash
            if spec[key] in (None, {}, (), []):  # "" is a prefix given: no tokens
                del spec[key]
        text = json.dumps(spec, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def load_options(self) -> dict[str, Any]:
        """The foreign model's `nmt.translate.load` options that were given."""
        return foreign_load_options(self)

    def to_dict(self) -> dict[str, Any]:
        spec = dataclasses.asdict(self)
        # The guards against loops only while they differ from their defaults: cells
        # measured before they existed keep their hash (`Decoding.key`).
        spec["decoding"] = self.decoding.key()
        del spec["decoding"]["beam_size"]  # the cell's own `beam_size` (and hash) says it
        return spec

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Cell:
        values = dict(values)
        values["decoding"] = Decoding(**values["decoding"])
        values["model_files"] = tuple(values["model_files"])
        values["ensemble"] = tuple(values.get("ensemble", ()))
        values["tokenizer"] = tuple(values.get("tokenizer", ()))
        return cls(**values)


# Cell keys added after cells were recorded: in the spec hash only when set.
_LATER_KEYS = ("environment", "ensemble", *FOREIGN_OPTIONS)


def load_bench_config(
    path: str | Path, overrides: list[str] = (), min_repeats: int = MIN_REPEATS
) -> BenchConfig:
    """Load a benchmark grid from YAML plus ``--set key=value`` overrides."""
    return bench_config(load_yaml(path), overrides, min_repeats, where=str(path))


def bench_config(
    raw: dict[str, Any],
    overrides: list[str] = (),
    min_repeats: int = MIN_REPEATS,
    where: str = "",
) -> BenchConfig:
    """A benchmark grid from a mapping (a grid file's content, or one a program built).

    Real benchmarks need `MIN_REPEATS` timed passes per cell, so that the spread of the
    speed can be stated; only tests pass a smaller `min_repeats`.
    """
    raw = apply_overrides(raw, list(overrides))
    try:
        return check_repeats(from_dict(BenchConfig, raw, ""), min_repeats)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None


def check_repeats(config: BenchConfig, min_repeats: int = MIN_REPEATS) -> BenchConfig:
    """`config`, if it has the `min_repeats` timed passes per cell a real benchmark needs
    (for a grid a program built as a `BenchConfig`, as `bench_config` checks a mapping)."""
    check(
        config.repeats >= min_repeats,
        "repeats",
        f"must be >= {min_repeats} (the spread across repeats is part of every result)",
    )
    return config


def expand_cells(config: BenchConfig, device: str | None = None) -> list[Cell]:
    """All cells of the grid, in order: test set, device, model, compute type, vmap,
    threads, beam, batch size. `device` replaces `grid.devices`. Resolves model paths and
    backends and finds the test-set files (downloading registered ones if need be);
    raises ConfigError naming the key of a model or test set that cannot be measured."""
    if device is not None and device not in DEVICES:
        raise ConfigError(f"device: must be cpu or cuda, got {device!r}")
    devices = (device,) if device else config.grid.devices
    models = [resolve_model(m, f"models[{i}]") for i, m in enumerate(config.models)]
    engines = [  # (device, entry, backend, files, compute type, use_vmap)
        (dev, entry, backend, files, compute_type, use_vmap)
        for dev in devices
        for entry, backend, files in models
        for compute_type in runnable_compute_types(entry, backend, dev)
        for use_vmap in vmap_settings(entry, backend)
    ]
    cells = []
    for i, test_set in enumerate(config.test_sets):
        src, ref = _test_files(test_set, config.data_dir, f"test_sets[{i}]")
        for dev, entry, backend, files, compute_type, use_vmap in engines:
            for threads, beam, batch in itertools.product(
                entry.threads or config.grid.threads,
                config.grid.beam_sizes,
                config.grid.batch_sizes,
            ):
                cells.append(
                    Cell(
                        model=entry.name,
                        path=str(Path(entry.path).resolve()),
                        backend=backend,
                        compute_type=compute_type,
                        use_vmap=use_vmap,
                        device=dev,
                        threads=threads,
                        beam_size=beam,
                        batch_size=batch,
                        test_set=test_set.name,
                        src=str(src),
                        ref=str(ref),
                        min_words=test_set.min_words,
                        max_lines=test_set.max_lines,
                        decoding=config.decoding,
                        repeats=config.repeats,
                        warmup_batches=config.warmup_batches,
                        latency_sentences=config.latency_sentences,
                        model_files=tuple(str(f) for f in files),
                        model_bytes=sum(f.stat().st_size for f in files),
                        model_mtime=max(f.stat().st_mtime for f in files),
                        translators=entry.translators,
                        min_pass_seconds=config.min_pass_seconds,
                        pin_cpus=config.pin_cpus,
                        environment=dict(entry.environment),
                        ensemble=tuple(str(Path(p).resolve()) for p in entry.ensemble),
                        tokenizer=tuple(str(Path(p).resolve()) for p in entry.tokenizer),
                        source_prefix=entry.source_prefix,
                        source_suffix=entry.source_suffix,
                        target_prefix=entry.target_prefix,
                    )
                )
    return cells


def _test_files(test_set: TestSet, data_dir: str, key: str) -> tuple[Path, Path]:
    if test_set.dataset:
        return (
            get_file(test_set.dataset, f"{test_set.split}.{test_set.src_lang}", data_dir or None),
            get_file(test_set.dataset, f"{test_set.split}.{test_set.tgt_lang}", data_dir or None),
        )
    for side in ("src", "ref"):
        if not Path(getattr(test_set, side)).is_file():
            raise ConfigError(f"{key}.{side}: {getattr(test_set, side)} is not a file")
    return Path(test_set.src).resolve(), Path(test_set.ref).resolve()
