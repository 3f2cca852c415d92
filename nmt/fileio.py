"""Atomic file writes and checksums: a reader never sees a half-written file.

A write goes to a hidden temporary file beside its target (`.NAME.XXXXXXXX.tmp`), is
fsynced, then renamed over the target (or, with `replace=False`, linked to it: that fails
when the target exists, so two writers never silently replace each other). A process killed
mid-write leaves the target as it was, plus possibly that temporary file, which
`remove_stale_temporaries` clears on restart. Files get the permissions the umask gives
(as `open` would), not the 0600 of a temporary file.

Who may write where (outputs, markers, locks, links) is `nmt.outputs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def atomic_write_bytes(path: str | Path, data: bytes, replace: bool = True) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`;
    with `replace=False`, publish it only if `path` does not exist (FileExistsError if it
    does, also when another process created it meanwhile).

    On failure (a full disk, say) `path` keeps its previous content and the OSError names
    `path`, which the one a failing `write` raises does not.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), file_mode())
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic, and fails when `path` exists
            os.unlink(tmp)
        _fsync_dir(path.parent)
    except FileExistsError:
        Path(tmp).unlink(missing_ok=True)
        raise FileExistsError(f"{path}: already exists (made meanwhile?); not replaced") from None
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise named(e, path) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def named(error: OSError, path: str | Path) -> OSError:
    """`error` (of the same errno) naming `path`: what a failing `write` raises (a full disk,
    a file over the size limit) names no file, and the one-line message should say where."""
    if error.errno is None:
        return OSError(f"{path}: {error}")
    return OSError(error.errno, error.strerror, str(path))


@contextlib.contextmanager
def errors_naming(path: str | Path) -> Iterator[None]:
    """Within the block, an OSError that names no file names `path`: for writers that are
    not ours (CTranslate2's `model.bin`, `torch.onnx.export`, `Path.write_bytes`), whose
    `[Errno 28] No space left on device` would not say where."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        raise named(e, path) from e


def temporary_prefix(path: Path) -> str:
    """`.NAME.` for the temporary files and folders of writes to `path`; a long NAME is
    shortened (keeping a hash of it) so that the temporary name stays legal (255 bytes)."""
    name = path.name
    if len(name.encode()) > 160:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"{name.encode()[:120].decode(errors='ignore')}~{digest}"
    return f".{name}."


def file_mode() -> int:
    """The permissions `open` gives a new file under this process's umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux: read it without changing it
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files that writers killed mid-write left in `folder`."""
    removed = 0
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("%s: removed %d temporary files of interrupted writes", folder, removed)
    return removed


def atomic_write_text(path: str | Path, text: str, replace: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), replace=replace)


def atomic_torch_save(obj: Any, path: str | Path, replace: bool = True) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue(), replace=replace)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
