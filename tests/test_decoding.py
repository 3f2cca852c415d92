"""Decoding options and thread counts are validated in one place (`nmt.decoding`): every
backend, the CLIs, the bench grid and the distillation config refuse an impossible value
with one line naming it, before the model is loaded; a thread count above the CPUs is
capped with a warning. Out of memory is one line too, at load and while translating."""

from __future__ import annotations

import logging
import math
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nmt.backends.pytorch
import nmt.decoding
import nmt.translate
from nmt.checkpoint import CheckpointError, load_checkpoint
from nmt.cli import evaluate_main, translate_main
from nmt.config import ConfigError, TrainConfig
from nmt.decoding import Decoding, cap_threads, check_threads, is_out_of_memory
from nmt.distill import DistillConfig, load_distill_config

from .toys import SOURCES, toy_exports

BACKENDS = ("pytorch", "ctranslate2", "onnx")


@pytest.fixture(scope="module")
def models(toy_tokenizer, tmp_path_factory) -> dict[str, Path]:
    """A random toy checkpoint and its CTranslate2 and ONNX exports, by backend."""
    return toy_exports(tmp_path_factory.mktemp("decoding"), toy_tokenizer)


def model_for(models: dict[str, Path], backend: str) -> Path:
    if backend not in models:
        pytest.skip(f"{backend} is not installed")
    return models[backend]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def torch_threads():
    """Restore PyTorch's thread count after a test that lets a translator set it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# --- the Decoding dataclass ---------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, name",
    [
        (dict(beam_size=0), "beam_size"),
        (dict(beam_size=-1), "beam_size"),
        (dict(beam_size=2.5), "beam_size"),
        (dict(beam_size=True), "beam_size"),
        (dict(max_batch_tokens=0), "max_batch_tokens"),
        (dict(max_batch_tokens=-5), "max_batch_tokens"),
        (dict(length_penalty=math.nan), "length_penalty"),
        (dict(length_penalty=math.inf), "length_penalty"),
        (dict(max_len_a=-0.5), "max_len_a"),
        (dict(max_len_a=math.nan), "max_len_a"),
        (dict(max_len_b=-1), "max_len_b"),
        (dict(min_len=-1), "min_len"),
    ],
)
def test_decoding_refuses_impossible_values(changes, name):
    with pytest.raises(ConfigError, match=f"^{name}: must be"):
        Decoding(**changes)


def test_decoding_accepts_the_edges():
    Decoding(beam_size=1, max_batch_tokens=1, length_penalty=-1.0, max_len_a=0, max_len_b=0)
    Decoding(min_len=0, length_penalty=0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_translate_defaults_are_the_decoding_defaults(models, backend):
    """A translator has no defaults of its own: `translate(lines)` decodes with `Decoding()`,
    and keyword options are `Decoding`'s fields replaced (one definition of the options)."""
    translator = nmt.translate.load(model_for(models, backend), threads=1)
    assert translator.translate(SOURCES) == translator.translate(SOURCES, Decoding())
    greedy = translator.translate(SOURCES, Decoding(beam_size=1))
    assert translator.translate(SOURCES, beam_size=1) == greedy
    assert translator.translate(SOURCES, Decoding(beam_size=3), beam_size=1) == greedy
    with pytest.raises(ConfigError, match="^beam: not a decoding option"):
        translator.translate(SOURCES, beam=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "options", [dict(beam_size=0), dict(beam_size=-1), dict(max_batch_tokens=-5)]
)
def test_every_translator_refuses_impossible_options(models, backend, options):
    translator = nmt.translate.load(model_for(models, backend), threads=1)
    with pytest.raises(ConfigError, match=f"^{next(iter(options))}: must be >= 1"):
        translator.translate(SOURCES[:2], **options)
    with pytest.raises(ConfigError):  # even with nothing to translate
        translator.translate([], **options)


# --- the CLI: one line, exit 2, before the model is loaded --------------------------------

DECODING_PROBES = [
    (["--beam", "0"], "beam_size: must be >= 1"),
    (["--beam", "-1"], "beam_size: must be >= 1"),
    (["--batch-tokens", "-5"], "max_batch_tokens: must be >= 1"),
    (["--max-len-a", "nan"], "max_len_a: must be a finite number"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("args, message", DECODING_PROBES)
def test_cli_refuses_decoding_options_before_loading(
    models, backend, args, message, capsys, monkeypatch
):
    def never(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(nmt.translate, "load", never)
    model = model_for(models, backend)
    assert translate_main(["-m", str(model), "--backend", backend, *args]) == 2
    assert one_line(capsys).startswith(f"error: {message}")


@pytest.mark.parametrize(
    "backend, args, message",
    [
        *((b, ["--threads", "-1"], "threads: must be >= 0") for b in BACKENDS),
        ("ctranslate2", ["--inter-threads", "0"], "inter_threads: must be >= 1"),
        ("ctranslate2", ["--inter-threads", "-2"], "inter_threads: must be >= 1"),
    ],
)
def test_cli_refuses_thread_counts(models, backend, args, message, capsys):
    model = model_for(models, backend)
    assert translate_main(["-m", str(model), "--backend", backend, *args]) == 2
    assert one_line(capsys).startswith(f"error: {message}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_caps_threads_at_the_cpus(
    models, backend, tmp_path, monkeypatch, caplog, capsys, torch_threads
):
    monkeypatch.setattr(nmt.decoding, "usable_cpus", lambda: 1)
    src, out = tmp_path / "src.txt", tmp_path / "out.txt"
    src.write_text("".join(f"{s}\n" for s in SOURCES))
    model = model_for(models, backend)
    with caplog.at_level(logging.WARNING, logger="nmt.decoding"):
        argv = ["-m", str(model), "--backend", backend, "--threads", "1000", "-i", str(src)]
        assert translate_main([*argv, "-o", str(out)]) == 0
    assert "threads=1000 exceeds the 1 CPUs this process may use: using 1" in caplog.text
    assert len(out.read_text().splitlines()) == len(SOURCES)
    assert capsys.readouterr().err == ""


def test_evaluate_cli_refuses_a_zero_beam(models, tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text("".join(f"{s}\n" for s in SOURCES))
    argv = ["-m", str(models["pytorch"]), "--src", str(src), "--ref", str(src)]
    assert evaluate_main([*argv, "-o", str(tmp_path / "eval"), "--beam", "0"]) == 2
    assert one_line(capsys).startswith("error: beam_size: must be >= 1")


# --- thread counts ------------------------------------------------------------------------


def test_cap_threads(monkeypatch, caplog):
    monkeypatch.setattr(nmt.decoding, "usable_cpus", lambda: 4)
    with caplog.at_level(logging.WARNING, logger="nmt.decoding"):
        assert cap_threads(0, "threads") == 0  # the library's default
        assert cap_threads(4, "threads") == 4
        assert caplog.text == ""
        assert cap_threads(1000, "threads") == 4
    assert "threads=1000 exceeds the 4 CPUs" in caplog.text
    with pytest.raises(ConfigError, match="^threads: must be >= 0"):
        cap_threads(-1, "threads")
    with pytest.raises(ConfigError, match="^inter_threads: must be >= 1"):
        check_threads(0, "inter_threads", minimum=1)


def test_train_threads(monkeypatch, caplog, tmp_path):
    with pytest.raises(ConfigError, match="train.threads"):
        TrainConfig(threads=-1)
    # A count above the CPUs is a warning and the cap, where the trainer sets it.
    from nmt.config import load_run_config
    from nmt.training import trainer as train_module

    class Stop(Exception):
        pass

    def stop(device):
        raise Stop

    set_to = []
    monkeypatch.setattr(nmt.decoding, "usable_cpus", lambda: 1)
    monkeypatch.setattr(train_module.torch, "set_num_threads", set_to.append)
    monkeypatch.setattr(train_module, "pick_device", stop)
    config = load_run_config(None, [f"run_dir={tmp_path / 'run'}", "train.threads=1000"])
    with caplog.at_level(logging.WARNING, logger="nmt.decoding"), pytest.raises(Stop):
        train_module.Trainer(config)
    assert set_to == [1]
    assert "train.threads=1000 exceeds the 1 CPUs" in caplog.text


# --- the bench grid and the distillation config check through nmt.decoding ----------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Decoding(length_penalty=math.nan), "length_penalty: must be a finite"),
        (lambda: Decoding(max_batch_tokens=0), "max_batch_tokens: must be >= 1"),
        (lambda: load_distill_config(None, ["decoding.beam_size=0"]), "decoding.beam_size: must"),
        (
            lambda: load_distill_config(None, ["decoding.max_batch_tokens=-5"]),
            "decoding.max_batch_tokens: must be >= 1",
        ),
        (
            lambda: load_distill_config(None, ["decoding.max_len_a=-1.0"]),
            "decoding.max_len_a: must be >= 0",
        ),
        (lambda: DistillConfig(threads=-1), "threads: must be >= 0"),
    ],
)
def test_configs_check_through_the_shared_validators(make, message):
    with pytest.raises(ConfigError) as error:
        make()
    assert str(error.value).startswith(message)


# --- out of memory ------------------------------------------------------------------------


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 8 bytes"))
    assert is_out_of_memory(RuntimeError("mkl_malloc: failed to allocate memory"))
    assert not is_out_of_memory(RuntimeError("PytorchStreamReader failed reading zip archive"))


@pytest.mark.parametrize(
    "error",
    [MemoryError(), RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory")],
)
def test_loading_a_checkpoint_out_of_memory_is_one_checkpoint_error(models, monkeypatch, error):
    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "load", out_of_memory)
    path = models["pytorch"]
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: out of memory loading the model: it needs at least")
    assert "int8" in message and "\n" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_cli_out_of_memory_at_load_is_one_line(models, monkeypatch, capsys):
    def out_of_memory(state, source=None):
        raise MemoryError

    monkeypatch.setattr(nmt.backends.pytorch, "model_from_checkpoint", out_of_memory)
    assert translate_main(["-m", str(models["pytorch"])]) == 2
    line = one_line(capsys)
    assert line.startswith(f"error: {models['pytorch']}: out of memory loading the model")


def test_cli_out_of_memory_while_translating_is_one_line(models, monkeypatch, tmp_path, capsys):
    def out_of_memory(self, lines, **options):
        raise MemoryError

    monkeypatch.setattr(nmt.translate.TorchTranslator, "translate", out_of_memory)
    src = tmp_path / "src.txt"
    src.write_text("a dog runs\n")
    argv = ["-m", str(models["pytorch"]), "-i", str(src), "-o", str(tmp_path / "out.txt")]
    assert translate_main([*argv, "--batch-tokens", "512"]) == 2
    line = one_line(capsys)
    assert line.startswith("error: out of memory while translating: lower --batch-tokens (512)")


def test_a_model_larger_than_the_address_space_limit_is_one_line(tmp_path):
    """A real process under `ulimit -v`: a 4 GiB checkpoint (a sparse file: nothing is
    written) cannot fit in 3 GiB, and the translator says so before reading it."""
    big = tmp_path / "big.pt"
    with open(big, "wb") as f:
        f.truncate(4 * 2**30)

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    done = subprocess.run(
        [sys.executable, "-m", "nmt", "translate", "-m", str(big)],
        input="a dog runs\n",
        capture_output=True,
        text=True,
        preexec_fn=limit_memory,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {big}: out of memory loading the model")
    assert "8192 MiB (2 x its size on disk) of the 3072 MiB allowed (ulimit -v)" in lines[0]


def test_one_decoding_everywhere():
    """The search, the distillation config and the benchmark grid hold `nmt.decoding.Decoding`
    itself, not a copy of its fields."""
    import typing

    from nmt.bench.grid import BenchConfig
    from nmt.search import beam_search, greedy_search

    for cls in (DistillConfig, BenchConfig):
        assert typing.get_type_hints(cls)["decoding"] is Decoding, cls
    for function in (greedy_search, beam_search):
        assert typing.get_type_hints(function)["opts"] is Decoding, function
