"""A run's `log.jsonl`: one JSON record a line (training intervals, validations), appended as
training goes, and trimmed back to a checkpoint's step when a killed run resumes."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from nmt.fileio import atomic_write_text
from nmt.outputs import open_nofollow

log = logging.getLogger(__name__)


class RunLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        try:
            fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:  # a failed write's error does not name the file
            raise OSError(e.errno, e.strerror, str(self.path)) from e

    def trim(self, step: int) -> None:
        """Drop the records a killed run wrote after its last checkpoint (`step`; a torn last
        line too) and the end-of-run ones (`valid_averaged`): the resumed run writes them
        again."""
        if not self.path.exists():
            return
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
                if record["step"] <= step and record["type"] != "valid_averaged":
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                pass
        if len(kept) < len(lines) or (lines and not lines[-1].endswith("\n")):
            atomic_write_text(self.path, "".join(line.rstrip("\n") + "\n" for line in kept))
            log.info(
                "%s: dropped %d records written after step %d",
                self.path,
                len(lines) - len(kept),
                step,
            )
