"""Atomic writes keep the umask's permissions and work for any legal name; a folder lock
admits one writer and dies with its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nmt.fileio import atomic_write_text
from nmt.outputs import FolderBusyError, FolderLock


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600


def test_atomic_writes_take_any_legal_name(tmp_path):
    name = "n" * 255
    atomic_write_text(tmp_path / name, "long")
    assert (tmp_path / name).read_text() == "long"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left


def test_a_write_without_replace_never_replaces(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "first", replace=False)
    with pytest.raises(FileExistsError, match="a.txt"):
        atomic_write_text(tmp_path / "a.txt", "second", replace=False)
    assert (tmp_path / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


HOLDER = """
import sys, time
from nmt.outputs import FolderLock
with FolderLock(sys.argv[1], "test"):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_one_writer_per_folder_and_the_lock_dies_with_its_process(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(FolderBusyError, match=f"PID {holder.pid}"),
            FolderLock(tmp_path / "run", "test"),
        ):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel has released it: no cleanup needed
        try:
            with FolderLock(tmp_path / "run", "test"):
                break
        except FolderBusyError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
