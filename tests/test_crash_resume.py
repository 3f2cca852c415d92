"""SIGKILL during training and export loses no work (benchmarks/crash_resume.py, small).

The script runs as users run it, with four targeted trials of its own: a child `nmt train`
stopped inside a checkpoint write and killed there must `--resume` from the last complete
checkpoint and end with bitwise the weights of an uninterrupted run; a child `nmt export`
killed mid-way leaves no folder or a complete one; a killed `nmt distill` resumes to the same
output. The full script (random kill times, every built-in kill point) runs as the slow test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "crash_resume.py"

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="the kill hooks read /proc/self/fd (Linux)"
)

NO_RANDOM = ["--random-trials", "0", "--random-export-trials", "0", "--random-distill-trials", "0"]


def run_script(out: Path, args: list[str]) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(out)], capture_output=True, text=True
    )
    result = out / "crash_resume.json"
    assert result.is_file(), done.stderr[-2000:]
    return done.returncode, json.loads(result.read_text())


@pytest.fixture(scope="module")
def targeted(tmp_path_factory):
    kills = [
        "train:half-written:last.pt:3",
        "export:export-before-publish::1",
        "export:export-between-renames::1",
        "distill:after-rename:00000:4",
    ]
    args = [*NO_RANDOM, "--steps", "30"] + [a for k in kills for a in ("--kill", k)]
    return run_script(tmp_path_factory.mktemp("crash"), args)


def test_kill_inside_a_checkpoint_write_resumes_to_the_same_weights(targeted):
    _, result = targeted
    (trial,) = result["train_trials"]
    killed, resumed = trial["attempts"]
    assert killed["killed"] and killed["temporaries_left"] == 1  # the half-written last.pt
    assert killed["last_step_on_disk"] == 2  # the last complete last.pt
    assert resumed["resumed_from"] == 2 and resumed["returncode"] == 0
    assert resumed["temporaries_left"] == 0
    checks = trial["checks"]
    assert checks["differing"] == [] and checks["same_checkpoint_set"], checks
    assert checks["same_logged_losses"] and checks["final_step"] == 30
    assert trial["ok"]


def test_killed_export_leaves_no_folder_or_a_complete_one(targeted):
    _, result = targeted
    trial = result["export_trials"][0]
    assert trial["checks"]["after_kill"] == "absent"
    assert trial["checks"]["after_rerun"] == "complete" and trial["ok"]


def test_killed_force_export_is_put_back_and_cleaned_up(targeted):
    _, result = targeted
    trial = result["export_trials"][1]
    assert trial["checks"]["after_kill"] == "absent"  # moved aside, the new one not yet in
    assert trial["checks"]["after_rerun"] == "complete"
    assert trial["checks"]["temporary_folders"] == [] and trial["ok"]


def test_killed_distillation_resumes_to_the_same_output(targeted):
    returncode, result = targeted
    (trial,) = result["distill_trials"]
    checks = trial["checks"]
    assert checks["after_kill"] == "chunks 4", checks
    assert checks["chunks_resumed"] == "4" and checks["orphan_workers"] == 0
    assert checks["after_rerun"] == "finished" and checks["same_output"], checks
    assert trial["ok"]
    assert returncode == 0 and result["all_ok"]  # the script's verdict agrees


def test_a_malformed_kill_point_is_a_usage_error(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--kill", "train:half-written", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "STAGE:PHASE:NAME:NTH" in done.stderr
    assert not (tmp_path / "crash_resume.json").exists()


@pytest.mark.slow
def test_crash_script_all_trials(tmp_path):
    returncode, result = run_script(tmp_path, ["--random-trials", "2", "--steps", "120"])
    assert returncode == 0 and result["all_ok"]  # every trial passed
