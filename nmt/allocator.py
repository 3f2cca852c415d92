"""Run CPU-heavy commands under a faster memory allocator: TCMalloc when installed, else
mimalloc from its pip wheel (`cmeel-mimalloc`, a dependency of nmt).

PyTorch on CPU allocates and frees large tensors (logits, activations) every step; glibc
malloc hands those back to the kernel and page-faults them in again, step after step. The
PyTorch performance tuning guide recommends TCMalloc or jemalloc instead. Measured side by
side on 2 cores (AMD EPYC, AVX-512/bf16; benchmarks/results/allocators/): TCMalloc is the
fastest in every training workload (small model: 1.16x glibc in float32, 1.74x in bf16, with
less memory), mimalloc with its documented settings close behind where the model is small
and no faster in the small model's float32; jemalloc is slower than glibc here.

An allocator must be loaded before the process starts, so the console entry points re-exec
themselves once with LD_PRELOAD set. `NMT_ALLOCATOR` picks: `auto` (the default: TCMalloc,
else mimalloc), `tcmalloc`, `mimalloc`, or `system` (glibc's malloc: no re-exec).
Install TCMalloc on Debian/Ubuntu: `apt-get install libtcmalloc-minimal4` (scripts/setup.sh
does when run as root).
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)
# mimalloc's documented settings for long-running, allocation-heavy processes: commit arenas
# at once, and large OS pages where the system grants them (measured with these).
MIMALLOC_SETTINGS = {"MIMALLOC_ARENA_EAGER_COMMIT": "1", "MIMALLOC_ALLOW_LARGE_OS_PAGES": "1"}
_PRELOADED = ("tcmalloc", "jemalloc", "mimalloc")


def find_tcmalloc() -> str | None:
    for path in _CANDIDATES:
        if Path(path).is_file():
            return path
    name = ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")
    return name


def find_mimalloc() -> str | None:
    """libmimalloc.so of the `cmeel-mimalloc` wheel, where it is installed."""
    try:
        files = importlib.metadata.files("cmeel-mimalloc") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == "libmimalloc.so":
            path = Path(f.locate())
            if path.is_file():
                return str(path)
    return None


def choose_allocator() -> tuple[str, str, dict[str, str]] | None:
    """(name, library, extra environment) of the allocator to run under, as `NMT_ALLOCATOR`
    says; None for glibc's malloc (asked for, or none found)."""
    wanted = os.environ.get("NMT_ALLOCATOR", "auto")
    if wanted in ("auto", "tcmalloc") and (path := find_tcmalloc()):
        return "tcmalloc", path, {}
    if wanted in ("auto", "mimalloc") and (path := find_mimalloc()):
        return "mimalloc", path, MIMALLOC_SETTINGS
    return None


def reexec_with_tcmalloc(command: str) -> None:
    """Replace this process by `python -m nmt COMMAND ARGS...` with the allocator of
    `choose_allocator` preloaded (TCMalloc, else mimalloc).

    Does nothing when disabled (`NMT_ALLOCATOR=system`), when an allocator is preloaded
    already, or when none is installed.
    """
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in _PRELOADED):
        return
    chosen = choose_allocator()
    if chosen is None:
        if os.environ.get("NMT_ALLOCATOR", "auto") != "system":
            log.info(
                "no faster allocator found; training runs faster under TCMalloc "
                "(apt-get install libtcmalloc-minimal4) or mimalloc (pip install cmeel-mimalloc)"
            )
        return
    _, path, settings = chosen
    env = dict(os.environ, **settings, LD_PRELOAD=f"{path}:{preload}" if preload else path)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "nmt", command, *sys.argv[1:]], env)
