"""results.jsonl: one JSON record per measured cell, appended, never rewritten.

Each record is appended with a single `write` on a file opened in append mode, so a
reader (or a crash) never sees half a record mixed into another; a torn last line left by
a killed process is skipped with a warning. A cell measured again (``--force``) appends a
new record: the latest record of a `cell_id` is the current one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from nmt.outputs import ensure_folder, open_nofollow

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append `record` as one line, in one write, and flush it to disk."""
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    ensure_folder(Path(path).parent)
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"{path}: short write ({written} of {len(data)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All records of a results file, in order; unreadable lines are skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: not a JSON record (torn write?); skipped", path, number)
                continue
            if isinstance(record, dict) and "cell_id" in record and "status" in record:
                records.append(record)
            else:
                log.warning("%s:%d: not a benchmark record; skipped", path, number)
    return records


def latest(records: list[dict[str, Any]], key: str = "cell_id") -> dict[str, dict[str, Any]]:
    """The latest record per `key`, in the order each key first appeared."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        out[record[key]] = record
    return out


def measured(records: list[dict[str, Any]]) -> set[str]:
    """Spec hashes whose latest record is a successful measurement."""
    return {h for h, r in latest(records, "spec_hash").items() if r["status"] == "ok"}
