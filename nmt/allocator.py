"""Run CPU-heavy commands under TCMalloc when it is installed.

PyTorch on CPU allocates and frees large tensors (logits, activations) every step; glibc
malloc hands those back to the kernel and page-faults them in again, step after step. The
PyTorch performance tuning guide recommends TCMalloc or jemalloc instead. Measured here on
2 cores, Multi30k small model, bf16: about 4,000 target tokens/s under TCMalloc against
2,900 with glibc (jemalloc: 2,500), with identical losses.

An allocator must be loaded before the process starts, so the console entry points re-exec
themselves once with LD_PRELOAD set. `NMT_ALLOCATOR=system` turns this off.
Install on Debian/Ubuntu: `apt-get install libtcmalloc-minimal4`.
"""

from __future__ import annotations

import ctypes.util
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


def find_tcmalloc() -> str | None:
    for path in _CANDIDATES:
        if Path(path).is_file():
            return path
    name = ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")
    return name


def reexec_with_tcmalloc(command: str) -> None:
    """Replace this process by `python -m nmt COMMAND ARGS...` with TCMalloc preloaded.

    Does nothing when disabled, already preloaded, or when TCMalloc is not installed.
    """
    if os.environ.get("NMT_ALLOCATOR", "tcmalloc") != "tcmalloc":
        return
    preload = os.environ.get("LD_PRELOAD", "")
    if "tcmalloc" in preload or "jemalloc" in preload:
        return
    path = find_tcmalloc()
    if path is None:
        log.info(
            "TCMalloc not found; training runs faster with it "
            "(apt-get install libtcmalloc-minimal4)"
        )
        return
    env = dict(os.environ, LD_PRELOAD=f"{path}:{preload}" if preload else path)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "nmt", command, *sys.argv[1:]], env)
