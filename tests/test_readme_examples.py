"""Every example of README.md runs as written, in order, after its own quick start.

The README's shell and Python blocks are read from the file itself and run one after the
other in a sandbox that looks like a fresh checkout (`pipelines/` and `models/` of this
repository, `../shared/data` beside it holding a toy Multi30k), so an example that names a
path the quick start does not make, an option that is gone or an API that changed fails
here. Only two things differ from a user's run: the set-up lines (venv, pip), the test
command itself and ```text blocks (commands for several machines) are not run, and the
commands that train get `--set` overrides that shrink the models and budgets (SHRINK below)
so the whole README runs in about a minute.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TOY_PAIRS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

SETUP = ("python3 -m venv", "source ", "pip install", "python -m pytest")

TINY_RUN = [  # a model that learns the toy corpus in a few seconds (tests/test_pipeline.py)
    "model.d_model=64",
    "model.heads=4",
    "model.ffn=128",
    "model.enc_layers=2",
    "model.dec_layers=1",
    "model.dropout=0.0",
    "model.attn_dropout=0.0",
    "model.max_positions=64",
    "tokenizer.vocab_size=60",
    "tokenizer.byte_fallback=false",
    "train.max_steps=150",
    "train.max_minutes=0",
    "train.batch_tokens=64",
    "train.lr=0.003",
    "train.warmup_steps=20",
    "train.label_smoothing=0.0",
    "train.log_every=50",
    "train.valid_every=50",
    "train.save_every=50",
    "train.average_last=2",
    "train.valid_bleu=false",
    "train.precision=fp32",
    "train.threads=1",
]
PIPELINE = [  # the teacher: the committed member it names, adopted as it is
    f"students[0].set=[{', '.join(TINY_RUN)}]",
    "nproc=1",  # torchrun is run by the README's own example
    "teacher_min_bleu=0",  # the toy dev set is not Multi30k's: no floor to pass
    "distill.workers=1",
    "distill.chunk_lines=20",
    "bench.beam_sizes=[1]",
    "bench.use_vmap=[true]",
    "bench.repeats=3",
    "bench.warmup_batches=0",
    "bench.latency_sentences=0",
    "bench.min_pass_seconds=0.1",
]
FINETUNE = [  # the parent fixes the shape: only the budget shrinks
    "train.max_steps=4",
    "train.batch_tokens=256",
    "train.log_every=2",
    "train.valid_every=2",
    "train.save_every=2",
    "train.threads=1",
]
# A command's start -> the overrides appended to it.
SHRINK = {
    "nmt-pipeline pipelines/quickstart.yaml": PIPELINE,
    "nmt-train --config models/multi30k-small.yaml": TINY_RUN,
    "torchrun --standalone --nproc_per_node 2 -m nmt train": TINY_RUN,
    "nmt-train --config models/finetune-tatoeba.yaml": FINETUNE,
}
# Examples not run here, and why; each must still be in the README.
NOT_RUN = {
    "scripts/libretranslate_demo.sh": "installs LibreTranslate from PyPI into a venv of its "
    "own (network); run by hand, docs/argos.md",
}


def examples() -> list[tuple[int, str, str]]:
    """(line number, language, code) of each runnable example: a shell command (its `\\`
    continuations joined, comments dropped) of a fenced shell block or an indented block,
    or a whole Python block."""
    found: list[tuple[int, str, str]] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    language, block, start, blank = None, [], 0, True
    for number, line in enumerate(lines, 1):
        fence = re.match(r"^```(\w*)\s*$", line)
        indented = language is None and line.startswith("    ") and (blank or block)
        if fence and language is None:
            if block:  # an indented block ends
                found.extend(_commands(block, start))
            language, block, start = fence.group(1) or "text", [], number + 1
        elif fence:
            if language == "python":
                found.append((start, "python", "\n".join(block)))
            elif language in ("bash", "sh", "shell"):
                found.extend(_commands(block, start))
            language, block = None, []
        elif language is not None:
            block.append(line)
        elif indented:
            start = start if block else number
            block.append(line[4:])
        elif block and line.strip():
            found.extend(_commands(block, start))
            block = []
        blank = not line.strip()
    if block and language is None:
        found.extend(_commands(block, start))
    return found


def _commands(block: list[str], start: int) -> list[tuple[int, str, str]]:
    commands, pending, first = [], "", 0
    for number, line in enumerate(block, start):
        text = line.split(" #")[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not text and not pending:
            continue
        first = first if pending else number
        if text.endswith("\\"):
            pending += text[:-1].strip() + " "
            continue
        command = (pending + text.strip()).strip()
        pending = ""
        if command and not command.startswith(SETUP):
            commands.append((first, "bash", command))
    return commands


def shrink(command: str) -> str:
    last = command.split("|")[-1].strip()
    extra = next((v for start, v in SHRINK.items() if last.startswith(start)), [])
    return command + "".join(f" --set '{value}'" for value in extra)


def write_toy_data(data: Path) -> None:
    """Toy Multi30k and Tatoeba folders, named as in ../shared/data."""
    splits = {"multi30k": ("train", "val", "test_2016_flickr"), "tatoeba": ("train", "dev", "test")}
    for dataset, names in splits.items():
        folder = data / dataset
        folder.mkdir(parents=True)
        for split in names:
            reps = 8 if split == "train" else 1
            (folder / f"{split}.en").write_text("".join(f"{s}\n" for s, _ in TOY_PAIRS) * reps)
            (folder / f"{split}.de").write_text("".join(f"{t}\n" for _, t in TOY_PAIRS) * reps)


def test_the_readme_has_the_examples_this_test_shrinks_or_skips():
    commands = [code for _, language, code in examples() if language == "bash"]
    assert any(c.startswith("nmt-pipeline pipelines/quickstart.yaml") for c in commands)
    for start in [*SHRINK, *NOT_RUN]:  # an entry for an example the README lost is stale
        assert any(c.split("|")[-1].strip().startswith(start) for c in commands), start
    assert any(language == "python" for _, language, _ in examples())


def test_every_readme_example_runs_as_written(tmp_path):
    pytest.importorskip("ctranslate2")
    sandbox = tmp_path / "main"
    sandbox.mkdir()
    for folder in ("pipelines", "models", "scripts"):
        (sandbox / folder).symlink_to(ROOT / folder)
    write_toy_data(tmp_path / "shared" / "data")
    home = tmp_path / "home"  # Argos Translate installs packages under the home folder
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "NMT_DATA_DIR": "",  # the examples name ../shared/data themselves
        "PYTHONPATH": str(ROOT),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "ARGOS_PACKAGES_DIR": str(home / "packages"),
    }
    ran, without_argos = [], []
    argos = importlib.util.find_spec("argostranslate") is not None
    for number, language, code in examples():
        if any(code.startswith(skipped) for skipped in NOT_RUN):
            continue
        if "argostranslate" in code and not argos:
            without_argos.append(f"README.md:{number}")
            continue
        if language == "python":
            argv = [sys.executable, "-c", code]
        else:
            argv = ["bash", "-c", f"set -o pipefail; {shrink(code)}"]
        done = subprocess.run(argv, cwd=sandbox, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (
            f"README.md:{number}: {code}\nexit {done.returncode}\n{done.stderr[-3000:]}"
        )
        if code.startswith("curl") and "/translate" in code:  # the server example answered
            assert '"translatedText"' in done.stdout, f"README.md:{number}: {done.stdout}"
        ran.append(code)
    assert (sandbox / "runs" / "pipelines" / "quickstart" / "zoo" / "zoo.md").is_file()
    assert (sandbox / "runs" / "multi30k-small-test").exists()
    if without_argos:  # everything else ran and passed
        pytest.skip(
            f"{', '.join(without_argos)}: needs argostranslate (the argos extra, which "
            "scripts/setup.sh installs)"
        )
    assert len(ran) >= 8, ran
