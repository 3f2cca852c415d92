"""Heavy engines load lazily: importing the trainer, the CLI or the checkpoint code imports
neither CTranslate2 nor ONNX (Runtime), and loading a model imports only its own engine.
Each check runs in a fresh interpreter, since this one has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .toys import toy_exports

ENGINES = ("ctranslate2", "onnxruntime", "onnx")


def _engines_after(code: str, *args: str) -> list:
    """What `code` prints (JSON) when run in a fresh interpreter; it may use `engines()`,
    the engine packages imported so far."""
    prelude = (
        f"import json, sys\nENGINES = {ENGINES!r}\n"
        "def engines(): return sorted({m.split('.')[0] for m in sys.modules} & set(ENGINES))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + code, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "modules",
    [
        "nmt.training.run, nmt.cli, nmt.checkpoint, nmt.weights",
        "nmt.translate, nmt.export, nmt.export.folder, nmt.export.weights, nmt.export.onnx, "
        "nmt.machine, nmt.evaluate, nmt.distill, nmt.pipeline, nmt.zoo",
    ],
)
def test_importing_the_toolkit_imports_no_engine(modules):
    assert _engines_after(f"import {modules}\nprint(json.dumps(engines()))") == []


@pytest.fixture(scope="module")
def models(toy_tokenizer, tmp_path_factory) -> dict[str, Path]:
    """A random toy checkpoint and its CTranslate2 and ONNX exports (where installed)."""
    return toy_exports(tmp_path_factory.mktemp("imports"), toy_tokenizer)


def test_loading_a_model_imports_only_its_engine(models):
    """`nmt.translate.load` of each artifact in turn, in one fresh interpreter: every load
    translates and adds its own engine only (the ONNX backend needs ONNX Runtime, not the
    `onnx` package the exporter uses)."""
    code = (
        "from nmt.translate import load\n"
        "seen = []\n"
        "for path in sys.argv[1:]:\n"
        "    translator = load(path, threads=1)\n"
        "    assert translator.translate(['a b c'], beam_size=1)\n"
        "    seen.append([translator.backend, engines()])\n"
        "print(json.dumps(seen))"
    )
    expected = {"pytorch": [], "ctranslate2": ["ctranslate2"], "onnx": ["onnxruntime"]}
    seen, before = _engines_after(code, *map(str, models.values())), set()
    for (backend, engines), name in zip(seen, models, strict=True):
        assert backend == name
        assert sorted(set(engines) - before) == expected[name]
        before = set(engines)
