"""benchmarks/experiments/tiny_sweep.py: dev curves of run evidence folders, side by side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "tiny_sweep.py"
SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"


def write_run(folder: Path, curve: dict[int, float], averaged: dict[int, float]) -> None:
    """An evidence folder: the last stop's average in summary.json, earlier ones in step*/."""
    folder.mkdir(parents=True)
    records = [{"type": "train", "step": 100, "loss": 5.0}]
    records += [
        {"type": "valid", "step": s, "valid_bleu": b, "bleu_signature": SIGNATURE}
        for s, b in curve.items()
    ]
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    *earlier, last = sorted(averaged)
    (folder / "summary.json").write_text(
        json.dumps({"averaged": {"step": last, "valid_bleu": averaged[last]}})
    )
    for step in earlier:
        (folder / f"step{step}").mkdir()
        (folder / f"step{step}" / "summary.json").write_text(
            json.dumps({"averaged": {"step": step, "valid_bleu": averaged[step]}})
        )


def run(tmp_path: Path, *specs: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"), *specs],
        capture_output=True,
        text=True,
    )


def test_table_puts_runs_side_by_side(tmp_path):
    write_run(tmp_path / "a", {500: 5.5, 1000: 21.25}, {1000: 22.0, 2000: 30.125})
    write_run(tmp_path / "b", {500: 9.0}, {500: 9.5})
    done = run(tmp_path, f"base={tmp_path / 'a'}", f"light={tmp_path / 'b'}")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "out" / "README.md").read_text()
    assert "| update | base | light |" in text
    assert "| 500 | 5.50 | 9.00 |" in text
    assert "| 1,000 | 21.25 | - |" in text
    assert "| **500 averaged** | - | **9.50** |" in text
    assert "| **2,000 averaged** | **30.12** | - |" in text
    assert SIGNATURE in text
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0


def test_bad_input_names_the_file_and_line(tmp_path):
    write_run(tmp_path / "a", {500: 5.5}, {500: 6.0})
    with open(tmp_path / "a" / "log.jsonl", "a") as f:
        f.write("{not json\n")
    done = run(tmp_path, f"a={tmp_path / 'a'}")
    assert done.returncode != 0
    assert f"{tmp_path / 'a' / 'log.jsonl'}:3: not JSON" in done.stderr

    done = run(tmp_path, f"{tmp_path / 'a'}")
    assert done.returncode != 0 and "expected LABEL=DIR" in done.stderr
    done = run(tmp_path, f"x={tmp_path / 'missing'}")
    assert done.returncode != 0 and "no such file" in done.stderr
