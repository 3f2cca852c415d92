"""Choosing the runtime: the measured cell that meets a criterion, written as deploy.json.

`nmt-bench --choose CRITERION` picks, among the successful cells of a results file, the one
that meets every constraint of the criterion and is best by its objective, and writes it as
a `Profile` (deploy.json): the model, engine settings and decoding to run, the figures they
were measured at, and the CPU they were measured on. `nmt-translate --profile deploy.json`
runs it. A choice holds for the machine it was measured on: run elsewhere, `check_machine`
warns and says what to run to measure there.

The criterion, case and spaces ignored::

    criterion  := part (("," | " at ") part)*
    part       := constraint | objective
    constraint := metric op number [unit]
    metric     := p50 | p90 | p99      latency of one sentence at a time, in ms
                | bleu
                | memory               peak RSS on CPU, GPU memory on CUDA, in MB
                | words/s              batched throughput
    op         := <= | < | >= | >
    objective  := max words/s          (the default)
                | max bleu

e.g. ``p90<=20ms``, ``max words/s at bleu>=35``, ``max bleu, p99<50ms, memory<=400MB``. Ties
go to the better BLEU (max words/s) or the faster cell (max bleu), then to the cell first in
the results. BLEU and speed compare only within one test set on one device: results holding
several must be narrowed (`only`, `device`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import operator
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt import machine
from nmt.bench.models import FOREIGN_OPTIONS, foreign_load_options
from nmt.bench.records import latest, read_records
from nmt.config import ConfigError, check, from_dict
from nmt.decoding import Decoding, check_threads
from nmt.outputs import claim
from nmt.translate import BACKENDS

log = logging.getLogger(__name__)

DEPLOY_FILE = "deploy.json"
FORMAT = 1  # of deploy.json; a later layout gets a new number

# metric -> its unit ("": none)
METRICS = {"p50": "ms", "p90": "ms", "p99": "ms", "bleu": "", "memory": "MB", "words/s": ""}
OBJECTIVES = ("words/s", "bleu")
_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
_CONSTRAINT = re.compile(r"^(p50|p90|p99|bleu|memory|words/s)(<=|>=|<|>)(\d+\.?\d*|\.\d+)(ms|mb)?$")
_OBJECTIVE = re.compile(r"^max(words/s|bleu)$")
_PARTS = re.compile(r",|\bat\b")
GRAMMAR = (
    'expected constraints such as "p90<=20ms", "p50<=N ms", "p99<N ms", "bleu>=N", '
    '"memory<=N MB", "words/s>=N", joined by "," or "at", optionally with "max words/s" '
    '(the default) or "max bleu" as the objective'
)


# --- the criterion ---------------------------------------------------------------------


@dataclass(frozen=True)
class Constraint:
    """`metric op bound`, e.g. p90 <= 20 (ms)."""

    metric: str  # a key of METRICS
    op: str  # a key of _OPS
    bound: float

    def holds(self, value: float | None) -> bool:
        return value is not None and _OPS[self.op](value, self.bound)

    def miss(self, value: float | None) -> float:
        """How far `value` is from meeting the constraint, relative to the bound (0: met)."""
        if value is None:
            return math.inf
        if self.holds(value):
            return 0.0
        return abs(value - self.bound) / max(abs(self.bound), 1e-9)

    def __str__(self) -> str:
        unit = METRICS[self.metric]
        return f"{self.metric} {self.op} {self.bound:g}" + (f" {unit}" if unit else "")


@dataclass(frozen=True)
class Criterion:
    """What `--choose` asks for: constraints every chosen cell meets, and the objective
    (`words/s` or `bleu`) it is the best cell by."""

    text: str
    constraints: tuple[Constraint, ...] = ()
    objective: str = "words/s"


def parse_criterion(text: str) -> Criterion:
    """Parse `--choose`'s text (see the module's grammar); a ConfigError in one line says
    what was expected and which part is wrong."""
    objective, constraints = None, []
    for part in _PARTS.split(text.lower()):
        word = re.sub(r"\s+", "", part)
        if match := _OBJECTIVE.match(word):
            if objective:
                raise ConfigError(f'--choose "{text}": one objective at most ("max ...")')
            objective = match[1]
            continue
        match = _CONSTRAINT.match(word)
        if not match or (match[4] and match[4] != METRICS[match[1]].lower()):
            shown = part.strip() or "an empty part"
            raise ConfigError(f'--choose "{text}": {GRAMMAR}; "{shown}" is none of these')
        constraints.append(Constraint(match[1], match[2], float(match[3])))
    return Criterion(text, tuple(constraints), objective or "words/s")


# --- choosing ------------------------------------------------------------------------------


class ChoiceError(ValueError):
    """No measured cell meets the criterion, or the results hold nothing comparable."""


def figures(record: dict[str, Any]) -> dict[str, float | None]:
    """The values of METRICS of one record (None: latency not measured)."""
    from nmt.bench.report import memory_mb, words_per_s  # matplotlib: for nmt-bench only

    latency = record.get("latency_ms") or {}
    values: dict[str, float | None] = {p: latency.get(p) for p in ("p50", "p90", "p99")}
    return {
        **values,
        "bleu": record["quality"]["bleu"],
        "memory": memory_mb(record),
        "words/s": words_per_s(record),
    }


def choose(
    records: list[dict[str, Any]],
    criterion: Criterion,
    device: str | None = None,
    only: str | None = None,
) -> dict[str, Any]:
    """The latest successful record (on `device`, its cell_id containing `only`) that meets
    every constraint and is best by the objective; ChoiceError (one line) when none does,
    naming the closest cell and what it missed."""
    candidates = [
        r
        for r in latest(records).values()
        if r["status"] == "ok"
        and (device is None or r["cell"]["device"] == device)
        and (not only or only in r["cell_id"])
    ]
    narrowing = [f"on {device}"] * bool(device) + [f"cell ids containing {only!r}"] * bool(only)
    narrowed = f" ({', '.join(narrowing)})" if narrowing else ""
    if not candidates:
        raise ChoiceError(f"no successfully measured cell to choose from{narrowed}")
    _one_workload(candidates)
    values = {r["cell_id"]: figures(r) for r in candidates}
    meets = [
        r
        for r in candidates
        if all(c.holds(values[r["cell_id"]][c.metric]) for c in criterion.constraints)
    ]
    if not meets:
        raise ChoiceError(_closest(candidates, values, criterion) + narrowed)
    other = "bleu" if criterion.objective == "words/s" else "words/s"
    return max(
        meets,
        key=lambda r: (values[r["cell_id"]][criterion.objective], values[r["cell_id"]][other]),
    )


def _one_workload(records: list[dict[str, Any]]) -> None:
    workloads = list(dict.fromkeys((r["cell"]["test_set"], r["cell"]["device"]) for r in records))
    if len(workloads) > 1:
        named = ", ".join(f"{test} on {device}" for test, device in workloads)
        raise ChoiceError(
            f"the results hold {len(workloads)} workloads ({named}); BLEU and speed compare "
            "only within one: narrow with --only TEST_SET and/or --device"
        )


def _closest(
    records: list[dict[str, Any]], values: dict[str, dict[str, float | None]], criterion: Criterion
) -> str:
    def misses(r: dict[str, Any]) -> list[float]:
        return [c.miss(values[r["cell_id"]][c.metric]) for c in criterion.constraints]

    best = min(records, key=lambda r: (sum(misses(r)), -sum(m == 0 for m in misses(r))))
    missed = [
        f"{c.metric} {_shown(values[best['cell_id']][c.metric], c.metric)}, not {c}"
        for c in criterion.constraints
        if not c.holds(values[best["cell_id"]][c.metric])
    ]
    return (
        f'no cell of {len(records)} meets "{criterion.text}": the closest, '
        f"{best['cell_id']}, has {'; '.join(missed)}"
    )


def _shown(value: float | None, metric: str) -> str:
    if value is None:
        return "not measured"
    unit = METRICS[metric]
    return f"{value:,.2f}".rstrip("0").rstrip(".") + (f" {unit}" if unit else "")


# --- the profile: deploy.json --------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Milliseconds per sentence, translated one at a time (None: not measured)."""

    sentences: int
    p50: float | None
    p90: float | None
    p99: float | None


@dataclass(frozen=True)
class Measured:
    """What the chosen cell measured: quality with its signature, speed, latency, memory."""

    test_set: str
    sentences: int
    bleu: float
    bleu_signature: str
    chrf: float
    words_per_s: float  # hypothesis words per second, batched, median of the repeats
    target_tokens_per_s: float
    latency_ms: Latency
    memory_mb: float
    memory: str  # what memory_mb is: "peak RSS" (CPU) or "GPU memory" (CUDA)


@dataclass(frozen=True)
class Machine:
    """The CPU the figures were measured on (`nmt.machine`'s description)."""

    cpu: str
    cpu_features: tuple[str, ...]  # those of nmt.machine.CPU_FEATURES it has
    description: str
    gpu: str  # "" on CPU


@dataclass(frozen=True)
class Profile:
    """deploy.json: the runtime `--choose` picked, as `nmt-translate --profile` runs it."""

    format: int
    criterion: str
    cell_id: str
    model: str
    ensemble: tuple[str, ...]  # further PyTorch ensemble members
    backend: str
    compute_type: str
    use_vmap: bool | None  # None: not a CTranslate2 model
    device: str
    threads: int  # per translator
    inter_threads: int  # CTranslate2 translators working in parallel
    batch_size: int  # sentences per translate() call
    decoding: Decoding  # beam size included
    measured: Measured
    machine: Machine
    results: str  # the results file it was chosen from
    grid: str  # the grid that measured it ("": not known)
    # A model nmt did not make: the load options it was measured with (see
    # nmt.bench.models.ModelEntry), in deploy.json only when set; files older than these keys
    # load without them.
    tokenizer: tuple[str, ...] = ()
    source_prefix: str | None = None
    source_suffix: str | None = None
    target_prefix: str | None = None

    def __post_init__(self) -> None:
        check(self.format == FORMAT, "format", f"must be {FORMAT}, got {self.format!r}")
        check(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}")
        check(self.device in ("cpu", "cuda"), "device", f"must be cpu or cuda, got {self.device!r}")
        check_threads(self.threads, "threads")
        check_threads(self.inter_threads, "inter_threads", minimum=1)
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        ct2 = self.backend == "ctranslate2"
        check(ct2 or self.use_vmap is None, "use_vmap", "applies to CTranslate2 models only")
        check(ct2 or self.inter_threads == 1, "inter_threads", "applies to CTranslate2 only")
        check(not self.ensemble or self.backend == "pytorch", "ensemble", "PyTorch models only")
        check(len(self.tokenizer) <= 2, "tokenizer", "one joint tokenizer, or two")

    @property
    def models(self) -> list[str]:
        return [self.model, *self.ensemble]

    def load_options(self) -> dict[str, Any]:
        """The `nmt.translate.load` options that the profile's model was measured with (a
        foreign model's tokenizer files and prefixes): every command loading it passes them."""
        return foreign_load_options(self)

    def summary(self) -> str:
        """One line: the cell and its figures, with the BLEU signature and the CPU."""
        m, lat = self.measured, self.measured.latency_ms
        latency = "/".join(
            _shown(v, "p50").removesuffix(" ms") for v in (lat.p50, lat.p90, lat.p99)
        )
        return (
            f"{self.cell_id}: BLEU {m.bleu:.2f} ({m.bleu_signature}), {m.words_per_s:,.0f} "
            f"words/s, {m.target_tokens_per_s:,.0f} target tokens/s, latency p50/p90/p99 "
            f"{latency} ms, {m.memory} {m.memory_mb:,.0f} MB; on {self.machine.description}"
        )


def profile_of(
    record: dict[str, Any], criterion: Criterion, results: str | Path, grid: str | Path = ""
) -> Profile:
    """The profile of a chosen record."""
    cell, quality, hw = record["cell"], record["quality"], record["hardware"]
    values = figures(record)
    latency = record.get("latency_ms") or {}
    measured = Measured(
        test_set=cell["test_set"],
        sentences=int(record["throughput"]["sentences"]),
        bleu=float(quality["bleu"]),
        bleu_signature=quality["bleu_signature"],
        chrf=float(quality["chrf"]),
        words_per_s=float(values["words/s"]),
        target_tokens_per_s=float(record["throughput"]["target_tokens_per_s"]["median"]),
        latency_ms=Latency(
            int(latency.get("sentences", 0)), *(_float(values[p]) for p in ("p50", "p90", "p99"))
        ),
        memory_mb=float(values["memory"]),
        memory="GPU memory" if cell["device"] == "cuda" else "peak RSS",
    )
    return Profile(
        format=FORMAT,
        criterion=criterion.text,
        cell_id=record["cell_id"],
        model=cell["path"],
        ensemble=tuple(cell.get("ensemble", ())),
        backend=cell["backend"],
        compute_type=cell["compute_type"],
        use_vmap=cell["use_vmap"],
        device=cell["device"],
        threads=cell["threads"],
        inter_threads=cell.get("translators", 1),
        batch_size=cell["batch_size"],
        decoding=Decoding(**{**cell["decoding"], "beam_size": cell["beam_size"]}),
        measured=measured,
        machine=Machine(
            cpu=str(hw.get("cpu", "")),
            cpu_features=tuple(hw.get("cpu_features") or ()),
            description=machine.describe_cpu(hw),
            gpu=str(hw.get("gpu") or ""),
        ),
        results=str(results),
        grid=str(grid),
        tokenizer=tuple(cell.get("tokenizer") or ()),
        source_prefix=cell.get("source_prefix"),
        source_suffix=cell.get("source_suffix"),
        target_prefix=cell.get("target_prefix"),
    )


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def save_profile(
    profile: Profile, path: str | Path, inputs: Iterable[str | Path] = (), force: bool = False
) -> Path:
    """Write `profile` as JSON to `path`, a file nmt-bench claims (replaced only with
    `force`, and only if nmt-bench wrote it). The foreign model's load options are written
    only when set ("" is a prefix set: no tokens)."""
    output = claim(path, "nmt-bench", inputs=inputs, force=force, folder=False)
    raw = dataclasses.asdict(profile)
    for key in FOREIGN_OPTIONS:
        if raw[key] in (None, ()):
            del raw[key]
    text = json.dumps(raw, indent=2, ensure_ascii=False)
    return output.write_text(text + "\n")


def load_profile(path: str | Path) -> Profile:
    """Read and validate a deploy.json; a ConfigError in one line names the file and key."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such profile (nmt-bench --choose writes one)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a JSON profile ({e})") from None
    try:
        return from_dict(Profile, raw, "")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def choose_runtime(
    results: str | Path,
    criterion: Criterion,
    output: str | Path,
    *,
    force: bool = False,
    device: str | None = None,
    only: str | None = None,
    grid: str | Path = "",
) -> Profile:
    """Choose among the records of `results` and write the profile to `output`."""
    records = read_records(results)
    try:
        record = choose(records, criterion, device, only)
    except ChoiceError as e:
        raise ChoiceError(f"{results}: {e}") from None
    profile = profile_of(record, criterion, results, grid)
    save_profile(profile, output, inputs=[results], force=force)
    return profile


def check_machine(profile: Profile, where: str | Path) -> bool:
    """Whether this machine has the CPU the profile was measured on (model name, and the
    instruction sets when the profile lists them); if not, log one warning saying so and
    what to run to measure here."""
    recorded = profile.machine
    cpu, features = machine.cpu_name(), machine.cpu_features()
    same_features = not recorded.cpu_features or set(recorded.cpu_features) == set(features)
    if recorded.cpu == cpu and same_features:
        return True
    log.warning(
        "%s: measured on %s, this machine has %s: the choice may not hold here; to measure "
        "here: nmt-bench --config %s --choose %s",
        where,
        _cpu(recorded.cpu, recorded.cpu_features),
        _cpu(cpu, features),
        profile.grid or "GRID.yaml",
        shlex.quote(profile.criterion),
    )
    return False


def _cpu(name: str, features: Iterable[str]) -> str:
    return f"{name} ({', '.join(features) or 'none of ' + ', '.join(machine.CPU_FEATURES)})"
