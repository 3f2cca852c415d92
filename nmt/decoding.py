"""Decoding options and the resources a translator asks for, validated in one place.

`Decoding` holds the options of every backend's `translate(lines, decoding)` (beam size,
batch size, length limits, guards against loops) and refuses impossible values on
construction; it is the one definition of them: the search (`nmt.search`), the
translators, the CLIs (`add_decoding_args`), the benchmark grid's and the distillation
config's `decoding:` sections all hold or take one, so a bad value is one `ConfigError`
naming the option wherever it comes from (before the model is loaded, where the caller can
tell). `check_threads` and `cap_threads` do the same for thread counts: a count above the
CPUs this process may use only oversubscribes them (1000 ONNX Runtime threads start ~1,500
OS threads and run 34x slower), so it is capped with a warning.

Out of memory: `fits_in_memory` tells before loading whether a model can fit under this
process's address-space limit (ulimit -v), `is_out_of_memory` recognises the ways the
engines report it, and `out_of_memory` says in one line what could not be loaded and what
to try instead.
"""

from __future__ import annotations

import logging
import numbers
import os
import resource
from dataclasses import dataclass, fields, replace
from pathlib import Path

from nmt.config import ConfigError, check_number

log = logging.getLogger(__name__)

# option -> (allowed range, integer or any real number, what the smallest value means)
_RULES: dict[str, tuple[str, type, str]] = {
    "beam_size": (">= 1", int, " (1: greedy search)"),
    "max_batch_tokens": (">= 1", int, ""),
    "length_penalty": ("", float, ""),  # any finite: < 0 favours short outputs (CTranslate2)
    "max_len_a": (">= 0", float, ""),
    "max_len_b": (">= 0", int, ""),
    "min_len": (">= 0", int, ""),
    "no_repeat_ngram_size": (">= 0", int, " (0: off)"),
    "repetition_penalty": ("> 0", float, " (1: off)"),
    "max_char_repeat": (">= 0", int, " (0: off)"),
}
# The guards against loops. They came after benchmark results and distillation jobs were
# keyed by a Decoding's fields: `Decoding.key()` leaves a guard out while it has its default,
# so that what was measured or distilled before keeps its key.
GUARDS = ("no_repeat_ngram_size", "repetition_penalty", "max_char_repeat")


def check_option(option: str, value: object, key: str = "") -> None:
    """Raise ConfigError naming `key` (default: `option`) unless `value` is a valid value of
    decoding option `option` (a field of `Decoding`)."""
    allowed, kind, meaning = _RULES[option]
    key = key or option
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is int and not integral:
        raise ConfigError(f"{key}: must be an integer, got {value!r}")
    check_number(value, key, allowed, meaning)


@dataclass(frozen=True)
class Decoding:
    """The options of `translate()`, shared by every backend (defaults included)."""

    beam_size: int = 4
    max_batch_tokens: int = 4096  # source tokens per batch
    length_penalty: float = 1.0  # hypothesis score / length ** length_penalty
    max_len_a: float = 1.5  # at most max_len_a * source length + max_len_b tokens
    max_len_b: int = 10
    min_len: int = 1  # no EOS before this many tokens
    # Guards against loops, which models fall into on text outside their domain; only the
    # character cap on by default (figures and why: benchmarks/results/robust-decoding):
    no_repeat_ngram_size: int = 0  # never generate an n-gram of this many tokens twice
    repetition_penalty: float = 1.0  # scale a generated token's logit: > 0 / p, < 0 * p
    max_char_repeat: int = 4  # cut every run of one character (not a digit) to this many

    def __post_init__(self) -> None:
        for f in fields(self):
            check_option(f.name, getattr(self, f.name))

    def key(self) -> dict[str, object]:
        """The fields as a dict, each of the `GUARDS` left out while it has its default: what
        identifies a decoding in a benchmark cell's hash (`nmt.bench.grid.Cell`), unchanged
        by the guards for every decoding that leaves them alone. `Decoding(**key())` is
        this decoding again."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in GUARDS or getattr(self, f.name) != f.default
        }


def decoding_of(decoding: Decoding | None = None, **options: object) -> Decoding:
    """The `Decoding` a `translate()` call asks for: `decoding`, with any of its fields given
    as keyword `options` replaced (`translate(lines, beam_size=4)` builds one from the
    defaults). An unknown option is a ConfigError naming it."""
    names = {f.name for f in fields(Decoding)}
    if unknown := sorted(set(options) - names):
        raise ConfigError(f"{unknown[0]}: not a decoding option ({', '.join(sorted(names))})")
    return replace(decoding or Decoding(), **options) if options else decoding or Decoding()


def check_nbest(n: object, decoding: Decoding) -> int:
    """`n` as the number of hypotheses to return per line, which must be an integer between 1
    and the beam size (the n-best list is the beam's finished hypotheses, as in
    CTranslate2); ConfigError naming `n_best` otherwise."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ConfigError(f"n_best: must be an integer, got {n!r}")
    if not 1 <= n <= decoding.beam_size:
        raise ConfigError(
            f"n_best: must be between 1 and the beam size {decoding.beam_size}, got {n}"
        )
    return int(n)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_threads(value: object, name: str, minimum: int = 0) -> None:
    """Raise ConfigError naming `name` unless `value` is a thread count >= `minimum`
    (0 for counts where 0 means the library's default)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name}: must be an integer, got {value!r}")
    if value < minimum:
        default = " (0: the library's default)" if minimum == 0 else ""
        raise ConfigError(f"{name}: must be >= {minimum}{default}, got {value!r}")


def cap_threads(value: int, name: str, minimum: int = 0) -> int:
    """`check_threads`, then the count to use: `value`, or the number of usable CPUs with a
    warning when `value` exceeds it."""
    check_threads(value, name, minimum)
    cpus = usable_cpus()
    if value > cpus:
        log.warning(
            "%s=%d exceeds the %d CPUs this process may use: using %d", name, value, cpus, cpus
        )
        return cpus
    return int(value)


# How the engines say it: PyTorch's DefaultCPUAllocator, CUDA, CTranslate2's mkl_malloc,
# ONNX Runtime's std::bad_alloc.
_OUT_OF_MEMORY = (
    "can't allocate memory",
    "cannot allocate memory",
    "failed to allocate",
    "out of memory",
    "bad_alloc",
)


def is_out_of_memory(error: BaseException) -> bool:
    """True for a MemoryError and for the engines' own words for it."""
    text = str(error).lower()
    return isinstance(error, MemoryError) or any(s in text for s in _OUT_OF_MEMORY)


def fits_in_memory(path: str | Path, copies: int = 1) -> bool:
    """False when this process's address-space limit (ulimit -v) leaves less room than
    `copies` times the model's size on disk: loading would fail part-way, and not always
    with a MemoryError (an import inside PyTorch may fail with a SystemError instead).
    True when there is no limit or the platform cannot tell."""
    room = _address_space_left()
    return room is None or copies * _disk_size(Path(path)) <= room


def out_of_memory(path: str | Path, copies: int = 1, built: int = 0) -> str:
    """One line: the model at `path` did not fit, how much it needs at least (`copies`
    times its size on disk, plus the `built` bytes that building the model allocates, its
    positional table included: a table no file stores can be most of the need), the
    address-space limit if one is set, and what to try."""
    need = copies * _disk_size(Path(path)) + built
    basis = "its size on disk" if copies == 1 else f"{copies} x its size on disk"
    if built:
        basis += f" + {_mib(built)} to build the model, positional table included"
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    bound = "" if limit == resource.RLIM_INFINITY else f" of the {_mib(limit)} allowed (ulimit -v)"
    return (
        f"{path}: out of memory loading the model: it needs at least {_mib(need)} ({basis})"
        f"{bound}; try an int8 export (nmt-export --int8), fewer --threads or a smaller "
        "--batch-tokens"
    )


def _address_space_left() -> int | None:
    """Bytes this process may still map under RLIMIT_AS; None without a limit (or /proc)."""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return limit - pages * os.sysconf("SC_PAGE_SIZE")


def _disk_size(path: Path) -> int:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files)


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"
