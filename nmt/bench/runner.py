"""Run a benchmark grid: each cell in a fresh subprocess, each record appended to
results.jsonl, then the report built from that file alone.

A rerun skips every cell whose exact measurement (its `spec_hash`: settings, paths, model
files and protocol) already has a successful record, unless `force`. A cell that fails or
times out is recorded as failed, with the end of its error output, and tried again by the
next run. With a time budget, no cell starts once the budget is spent, and a cell gets
at most the budget's remaining time; the cells left over are measured by the next run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nmt import machine
from nmt.bench.grid import BenchConfig, Cell, expand_cells
from nmt.bench.records import RESULTS_FILE, append_record, measured, read_records
from nmt.bench.report import write_report
from nmt.outputs import claim

log = logging.getLogger(__name__)

ERROR_TAIL_CHARS = 3000


@dataclass
class BenchResult:
    """What one `bench` call did, and where its report is."""

    output_dir: Path
    report: Path
    measured: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.measured)} cells measured, {len(self.skipped)} already measured, "
            f"{len(self.failed)} failed, {len(self.not_started)} left for the next run; "
            f"report: {self.report}"
        )


def output_dir_of(config: BenchConfig, output_dir: str | Path | None = None) -> Path:
    return Path(output_dir or config.output_dir or Path("benchmarks", "results", config.name))


def bench(
    config: BenchConfig,
    output_dir: str | Path | None = None,
    device: str | None = None,
    force: bool = False,
    only: str | None = None,
    compare: str | Path | None = None,
    measure: bool = True,
) -> BenchResult:
    """Measure the grid's cells not measured yet (all of them with `force`; only those
    whose cell_id contains `only`), then write report.md and the plots into `output_dir`.
    With `measure=False`, only rebuild the report from the results file."""
    if compare and not Path(compare).is_file():
        raise FileNotFoundError(f"{compare}: no such results file to compare with")
    out = output_dir_of(config, output_dir)
    result = BenchResult(out, out / "report.md")
    output = claim(out, "nmt-bench", resumable=True)  # a folder nmt-bench made, or a new one
    if measure:
        cells = select_cells(config, device, only)
        inputs = [path for c in cells for path in (c.path, c.src, c.ref)]
        claim(out, "nmt-bench", inputs=inputs, resumable=True)
        output.make()
        run_cells(cells, out / RESULTS_FILE, config, force, result)
    write_report(out / RESULTS_FILE, out, title=config.name, compare=compare)
    return result


def select_cells(
    config: BenchConfig, device: str | None = None, only: str | None = None
) -> list[Cell]:
    """The grid's cells on `device` (default: the grid's devices) whose id contains `only`."""
    return [c for c in expand_cells(config, device) if not only or only in c.cell_id]


def run_cells(
    cells: list[Cell], results: Path, config: BenchConfig, force: bool, result: BenchResult
) -> None:
    """Measure the cells not in `results` yet (all with `force`), within the time budget;
    append a record per cell and note in `result` what happened to each."""
    done = set() if force else measured(read_records(results))
    todo = [c for c in cells if c.spec_hash not in done]
    result.skipped = [c.cell_id for c in cells if c.spec_hash in done]
    if result.skipped:
        log.info(
            "%d of %d cells already measured (--force measures them again)",
            len(result.skipped),
            len(cells),
        )
    budget = config.time_budget_minutes * 60 or None
    started = time.monotonic()
    for n, cell in enumerate(todo, start=1):
        timeout = config.cell_timeout_minutes * 60
        if budget is not None:
            left = budget - (time.monotonic() - started)
            if left <= 0:
                result.not_started = [c.cell_id for c in todo[n - 1 :]]
                log.warning(
                    "time budget spent: %d cells left for the next run", len(result.not_started)
                )
                break
            timeout = min(timeout, left)
        log.info("cell %d/%d: %s", n, len(todo), cell.cell_id)
        record = run_cell(cell, timeout)
        append_record(results, record)
        if record["status"] == "ok":
            result.measured.append(cell.cell_id)
            log.info("  %s", one_line(record))
        else:
            result.failed.append(cell.cell_id)
            tail = record["stderr_tail"].strip().splitlines()
            log.error("  failed (%s): %s", record["error"], tail[-1] if tail else "")


def run_cell(cell: Cell, timeout_s: float) -> dict[str, Any]:
    """Measure `cell` in a fresh Python process; a record, successful or failed."""
    env = {**os.environ, **machine.thread_environment(cell.threads), **cell.environment}
    env.pop(machine.PIN_VARIABLE, None)
    cpus = machine.cpus_to_pin(cell.threads * cell.translators) if cell.pin_cpus else None
    if cpus:
        env[machine.PIN_VARIABLE] = ",".join(map(str, cpus))
    head = {
        "cell_id": cell.cell_id,
        "spec_hash": cell.spec_hash,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cell": cell.to_dict(),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "nmt.bench.cell"],
            input=json.dumps(cell.to_dict()),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else e.stderr
        return {
            **head,
            "status": "failed",
            "error": f"timed out after {timeout_s:.0f} s",
            "stderr_tail": (stderr or "")[-ERROR_TAIL_CHARS:],
        }
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode == 0 and lines:
        try:
            return {**head, "status": "ok", **json.loads(lines[-1])}
        except json.JSONDecodeError:
            pass
    return {
        **head,
        "status": "failed",
        "error": f"exit status {proc.returncode}" if proc.returncode else "no record printed",
        "stderr_tail": proc.stderr[-ERROR_TAIL_CHARS:],
    }


def one_line(record: dict[str, Any]) -> str:
    q, tp, lat = record["quality"], record["throughput"], record["latency_ms"]
    wps = tp["words_per_s"]
    text = (
        f"BLEU {q['bleu']:.2f} chrF2 {q['chrf']:.2f} | {wps['median']:,.0f} words/s "
        f"(spread {wps['spread']:.1%}) | {tp['target_tokens_per_s']['median']:,.0f} tokens/s"
    )
    if lat.get("sentences"):
        text += f" | p50 {lat['p50']:.1f} ms"
    return text + f" | peak RSS {record['memory']['peak_rss_mb']:,.0f} MB"
