"""Who may write where: the one rule for every file or folder a command writes.

Every command asks `claim` for its output before it writes anything, and writes through the
`Output` it gets back. The rule, in one place:

- An output never is, holds or lies inside one of the command's inputs (real paths, links
  resolved; a model folder counts with every file in it).
- An output that exists is replaced (or, for commands that resume, continued) only if the
  same command made it, which its marker proves: `.nmt-output.json` inside a folder, or
  `.NAME.nmt-output.json` beside a file, holding the command's kind (and, for a file, the
  sha256 of what it wrote, so a file changed since is no longer the command's). Anything
  else, `--force` included, is a one-line `OutputError` and nothing is touched; an empty
  folder counts as new.
- Writes are atomic: a file goes to a temporary beside it and is renamed (or linked, when
  nothing may be replaced) into place; a folder is built in a hidden work folder beside its
  target and published by one rename (`Output.staging`).
- Nothing follows a symbolic link: the output itself may not be one, and inside a folder it
  owns a command creates, appends, truncates and deletes only with `O_NOFOLLOW` / `lstat`
  (`open_nofollow`, `ensure_folder`, `remove`, `FolderLock`), so a run, prepared or
  distilled folder unpacked from someone else's archive cannot make it write elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from nmt.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    file_mode,
    file_sha256,
    named,
    temporary_prefix,
)

log = logging.getLogger(__name__)

MARKER = ".nmt-output.json"  # inside a folder a command made; `.NAME` + MARKER beside a file
LOCK = ".lock"


class OutputError(FileExistsError):
    """The output is in the way: an input, something another command or a user made, a link."""


@dataclass(frozen=True)
class Output:
    """An output `claim` allowed: `existed` when an earlier output of the same command is
    there (to be continued or, with force, replaced)."""

    path: Path
    kind: str
    folder: bool
    existed: bool

    # --- folders written in place (runs, distillations, preparations, benchmarks) ---------
    def make(self) -> Path:
        """Create the folder (if new) and its marker; return its path."""
        ensure_folder(self.path)
        if made_by(self.path, folder=True) != self.kind:
            _write_marker(self.path / MARKER, {"kind": self.kind})
        return self.path

    # --- folders built aside and published by one rename (exports) -----------------------
    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh folder to build the output in; on success it gets the marker and is
        renamed into place (an earlier output of this command moved aside first and put back
        if the rename fails); on failure it is removed and the output is as it was."""
        with self.workspace() as workdir:
            staging = workdir / "out"
            yield staging
            staging.mkdir(exist_ok=True)
            _write_marker(staging / MARKER, {"kind": self.kind})
            self._publish_folder(staging, workdir)

    @contextlib.contextmanager
    def workspace(self) -> Iterator[Path]:
        """A hidden work folder beside the output, named after it and this process (so
        that `recover_interrupted` knows a killed one), removed when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        prefix = f"{temporary_prefix(self.path)}{os.getpid()}."
        workdir = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=self.path.parent))
        try:
            yield workdir
        except OSError as e:  # a full disk: name the output, not a hidden work file
            outside = e.filename is not None and not str(e.filename).startswith(str(workdir))
            if isinstance(e, OutputError) or outside:
                raise
            raise named(e, self.path) from e
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _publish_folder(self, staging: Path, workdir: Path) -> None:
        previous = None
        if os.path.lexists(self.path):
            if not self.existed or made_by(self.path, folder=True) != self.kind:
                raise OutputError(
                    f"{self.path}: made by another process meanwhile; not replaced"
                ) from None
            previous = workdir / "previous"
            self.path.rename(previous)
        try:
            staging.rename(self.path)
        except BaseException as e:
            if previous is not None and not os.path.lexists(self.path):
                previous.rename(self.path)
            if isinstance(e, OSError) and e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise OutputError(
                    f"{self.path}: made by another process meanwhile; not replaced"
                ) from None
            raise

    # --- single files ----------------------------------------------------------------------
    def write_bytes(self, data: bytes) -> Path:
        """Publish `data` as the file (atomically; replacing only an earlier output of this
        command) and its marker."""
        atomic_write_bytes(self.path, data, replace=self.existed)
        self._mark_file()
        return self.path

    def write_text(self, text: str) -> Path:
        return self.write_bytes(text.encode("utf-8"))

    @contextlib.contextmanager
    def open_text(self) -> Iterator[IO[str]]:
        """Stream text into a temporary file beside the output, published (with its marker)
        when the block ends without an error; on an error the output is as it was."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=temporary_prefix(self.path), suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                yield f
                f.flush()
                os.fchmod(f.fileno(), file_mode())
                os.fsync(f.fileno())
            self.publish_file(Path(tmp))
        finally:
            Path(tmp).unlink(missing_ok=True)

    def publish_file(self, finished: Path) -> Path:
        """Move the finished file `finished` (beside the output) into place, then mark it."""
        try:
            if self.existed:
                if made_by(self.path, folder=False) != self.kind:
                    raise OutputError(f"{self.path}: changed by another process; not replaced")
                os.replace(finished, self.path)
            else:
                os.link(finished, self.path)  # fails if something appeared meanwhile
        except FileExistsError:
            raise OutputError(
                f"{self.path}: made by another process meanwhile; not replaced"
            ) from None
        self._mark_file()
        return self.path

    def _mark_file(self) -> None:
        info = {"kind": self.kind, "file": self.path.name, "sha256": file_sha256(self.path)}
        _write_marker(file_marker(self.path), info)


def claim(
    out: str | Path,
    kind: str,
    *,
    inputs: Iterable[str | Path | None] = (),
    force: bool = False,
    folder: bool = True,
    resumable: bool = False,
) -> Output:
    """May command `kind` write the output `out` (a folder, or with `folder=False` a file)?

    Refused (OutputError, one line naming the path): a symbolic link; an output that is,
    holds or lies inside one of `inputs`; an existing output that `kind` did not make
    (its marker says so), whatever `force` says. An existing output of `kind` is replaced
    only with `force`, or continued by a `resumable` command (train, distill, prepare,
    bench, pipeline), which decides itself what `force` starts over."""
    out = Path(out).absolute()
    what = "folder" if folder else "file"
    if out.is_symlink():
        raise OutputError(f"{out}: is a symbolic link; {kind} writes only a real {what} there")
    _check_inputs(out, kind, inputs)
    recover_interrupted(out)
    if not os.path.lexists(out):
        return Output(out, kind, folder, existed=False)
    if folder != out.is_dir():
        raise OutputError(f"{out}: exists and is not a {what}; choose another output")
    made = made_by(out, folder)
    if made == kind:
        if not (force or resumable):
            raise OutputError(f"{out}: already exists (use --force to replace it)")
        return Output(out, kind, folder, existed=True)
    if folder and not _entries(out):
        return Output(out, kind, folder, existed=False)
    why = f"was made by {made}" if made else f"was not made by {kind} (no {_marker_name(out)})"
    raise OutputError(
        f"{out}: exists and {why}; {kind} replaces only what it made itself, --force "
        f"included: choose another {what}"
    )


def _check_inputs(out: Path, kind: str, inputs: Iterable[str | Path | None]) -> None:
    real = Path(os.path.realpath(out))
    for source in inputs:
        if source is None or str(source) == "":
            continue
        src = Path(os.path.realpath(source))
        if real == src or real in src.parents or src in real.parents:
            raise OutputError(
                f"{out}: is, holds or lies inside the input {source}; {kind} never writes "
                "over its inputs: choose another output"
            )


def made_by(path: Path, folder: bool) -> str | None:
    """The command whose marker `path` carries (a file's only while its content is still
    what that command wrote), or None."""
    marker = path / MARKER if folder else file_marker(path)
    try:
        if marker.is_symlink() or path.is_symlink():
            return None
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("kind"), str):
        return None
    if not folder and info.get("sha256") != file_sha256(path):
        return None
    return info["kind"]


def file_marker(path: Path) -> Path:
    """The marker of the file output `path`: `.NAME.nmt-output.json` beside it."""
    return path.with_name(f".{path.name}{MARKER}")


def _marker_name(path: Path) -> str:
    return MARKER if path.is_dir() else file_marker(path).name


def write_marker(folder: Path, kind: str) -> None:
    """Mark `folder` as made by `kind`: only for a command that has proven it by other
    markers of its own (a distillation gathered from marked shard folders)."""
    _write_marker(folder / MARKER, {"kind": kind})


def _write_marker(path: Path, info: dict[str, Any]) -> None:
    if path.is_symlink():
        raise OutputError(f"{path}: is a symbolic link; not written through")
    atomic_write_text(path, json.dumps(info, indent=1) + "\n")  # a rename: never follows


def _entries(folder: Path) -> list[Path]:
    """What `folder` holds besides a lock and the temporaries of interrupted writes."""
    return [
        p
        for p in folder.iterdir()
        if p.name != LOCK and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    ]


# --- writing inside a folder a command owns --------------------------------------------------
def open_nofollow(path: str | Path, flags: int, mode: int = 0o666) -> int:
    """`os.open` that refuses (OutputError) to go through a symbolic link at `path`."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutputError(
                f"{path}: is a symbolic link; nmt never writes through a link in a folder "
                "it owns: remove the link"
            ) from None
        raise


def append_log(path: str | Path) -> logging.Handler:
    """A logging handler appending to `path` (created if absent), never through a link."""
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return _LogFile(os.fdopen(fd, "a", encoding="utf-8"))


class _LogFile(logging.StreamHandler):
    """A StreamHandler that owns its stream (closes it), as a FileHandler does."""

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            super().close()


def ensure_folder(path: str | Path) -> Path:
    """Create the folder `path` if absent; refuse a link or a file there."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise OutputError(f"{path}: is a symbolic link or not a folder; nmt writes no files there")
    return path


def remove(path: str | Path) -> None:
    """Delete a file or folder a command made, refusing a link there (its target is not ours
    and the link is not expected)."""
    path = Path(path)
    if path.is_symlink():
        raise OutputError(f"{path}: is a symbolic link; not deleted and not followed")
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def recover_interrupted(out: Path) -> None:
    """Clear the work folders of stagings for `out` whose process is gone (killed), first
    putting back the previous output that a killed replacement had moved aside."""
    pattern = re.compile(rf"^{re.escape(temporary_prefix(out))}(\d+)\.[^.]+\.tmp$")
    if not out.parent.is_dir():
        return
    for stale in out.parent.iterdir():
        match = pattern.match(stale.name)
        if not match or stale.is_symlink() or not stale.is_dir():
            continue
        if _process_alive(int(match.group(1))):
            continue
        previous = stale / "previous"
        if previous.is_dir() and not os.path.lexists(out):
            previous.rename(out)
            log.warning("%s: put back the output that an interrupted command moved aside", out)
        shutil.rmtree(stale, ignore_errors=True)
        log.info("%s: removed %s, left by an interrupted command", out.parent, stale.name)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class FolderBusyError(RuntimeError):
    """Another process holds the folder's lock."""


class FolderLock:
    """Hold `FOLDER/.lock` (created if needed, with the folder) while a command writes there.

    A second process fails at once with `FolderBusyError` naming the holder's PID. The lock
    is `flock`'s: the kernel drops it when the holder's last descriptor closes, so a killed
    holder (even by SIGKILL) leaves nothing to clean up; the file itself stays, harmless.
    A `.lock` that is a symbolic link is refused, never opened.
    """

    NAME = LOCK

    def __init__(self, folder: str | Path, what: str):
        self.path = Path(folder) / self.NAME
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        ensure_folder(self.path.parent)
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusyError(
                    f"{self.path.parent}: in use by another process (PID {holder}); "
                    f"one {self.what} at a time per folder: wait for it to end or choose "
                    "another folder"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
