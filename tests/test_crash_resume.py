"""SIGKILL during training and export loses no work (benchmarks/crash_resume.py, small).

A child `nmt train` is stopped inside a checkpoint write and killed there; `--resume` must
continue from the last complete checkpoint and end with bitwise the weights of an
uninterrupted run. A child `nmt export` killed mid-way leaves no folder or a complete one.
The full script (random kill times, every targeted kill point) runs as the slow test.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "crash_resume.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("crash_resume", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["crash_resume"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


crash_resume = _load_script()

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="the kill hooks read /proc/self/fd (Linux)"
)


@pytest.fixture(scope="module")
def killed_in_a_write(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    kinds = [("targeted", ("half-written", "last.pt", 3))]
    reference, _, trials = crash_resume.run_train_trials(root, steps=30, kinds=kinds, seed=0)
    return root, reference, trials[0]


def test_kill_inside_a_checkpoint_write_resumes_to_the_same_weights(killed_in_a_write):
    _, _, trial = killed_in_a_write
    killed, resumed = trial.attempts
    assert killed.killed and killed.temporaries_left == 1  # the half-written last.pt
    assert killed.last_step_on_disk == 2  # the last complete last.pt
    assert resumed.resumed_from == 2 and resumed.returncode == 0
    assert resumed.temporaries_left == 0
    checks = trial.checks
    assert checks["differing"] == [] and checks["same_checkpoint_set"], checks
    assert checks["same_logged_losses"] and checks["final_step"] == 30
    assert trial.ok


def test_killed_export_leaves_no_folder_or_a_complete_one(killed_in_a_write):
    root, reference, _ = killed_in_a_write
    kinds = [("targeted", ("export-before-publish", "", 1))]
    (trial,) = crash_resume.run_export_trials(root, reference, kinds, seed=0)
    assert trial.checks["after_kill"] == "absent"
    assert trial.checks["after_rerun"] == "complete" and trial.ok


def test_killed_force_export_is_put_back_and_cleaned_up(killed_in_a_write):
    root, reference, _ = killed_in_a_write
    kinds = [("targeted", ("export-between-renames", "", 1))]
    (trial,) = crash_resume.run_export_trials(root, reference, kinds, seed=1)
    assert trial.checks["after_kill"] == "absent"  # moved aside, the new one not yet in
    assert trial.checks["after_rerun"] == "complete"
    assert trial.checks["temporary_folders"] == [] and trial.ok


def test_killed_distillation_resumes_to_the_same_output(killed_in_a_write):
    root, reference, _ = killed_in_a_write
    teacher = root / "distill-teacher"
    crash_resume.launch(
        crash_resume.python_m_nmt("export", [str(reference), "-o", str(teacher)]),
        root / "teacher.log",
    )
    kinds = [("targeted", ("after-rename", "00000", 4))]
    _, (trial,) = crash_resume.run_distill_trials(root, teacher, kinds, seed=0)
    checks = trial.checks
    assert checks["after_kill"] == "chunks 4", checks
    assert checks["chunks_resumed"] == "4" and checks["orphan_workers"] == 0
    assert checks["after_rerun"] == "finished" and checks["same_output"], checks
    assert trial.ok


@pytest.mark.slow
def test_crash_script_all_trials(tmp_path):
    argv = ["--random-trials", "2", "--steps", "120", "--out", str(tmp_path)]
    assert crash_resume.main(argv) == 0  # every trial passed
