"""nmt.cli: one thin entry point per command, reachable as a console script and through
`python -m nmt COMMAND`, each with `--help`, one meaning of `--data-dir` and exit code 2 for
a usage error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from nmt.cli import COMMANDS, DATA_DIR_HELP

ROOT = Path(__file__).resolve().parents[1]


def console_scripts() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["scripts"]


def test_every_console_script_is_a_command_of_python_m_nmt():
    scripts = console_scripts()
    assert sorted(scripts) == sorted(f"nmt-{name}" for name in COMMANDS)
    for name, function in COMMANDS.items():
        assert scripts[f"nmt-{name}"] == f"nmt.cli:{function.__name__}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_exits_zero_and_data_dir_means_one_thing(name, capsys):
    with pytest.raises(SystemExit) as stop:
        COMMANDS[name](["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert f"nmt-{name}" in text
    if "--data-dir" in text and name != "prepare":  # prepare: relative corpus paths only
        assert " ".join(DATA_DIR_HELP.split()) in text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_unknown_option_is_a_usage_error(name, capsys):
    with pytest.raises(SystemExit) as stop:
        COMMANDS[name](["--no-such-option"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: nmt-{name}") and f"nmt-{name}: error: " in err


def test_python_m_nmt_names_the_commands_when_given_none_or_another():
    for argv in ([], ["nonsense"]):
        done = subprocess.run(
            [sys.executable, "-m", "nmt", *argv], capture_output=True, text=True, cwd=ROOT
        )
        assert done.returncode == 2
        assert all(name in done.stderr for name in COMMANDS), done.stderr
