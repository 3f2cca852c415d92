"""A malformed model file fails with one line naming the file (and the key where there is
one), in the error type its module documents, never with a traceback or a silent garbage
translation: weights metadata, tokenizers, export folders, model configs, a distillation's
raw.json, and writes on a full disk (issue 32)."""

from __future__ import annotations

import contextlib
import errno
import json
import resource
import shutil
import signal
import struct
from pathlib import Path

import pytest

from nmt.checkpoint import CheckpointError, load_checkpoint
from nmt.cli import export_main, translate_main
from nmt.config import ConfigError, ModelConfig, load_run_config
from nmt.distill import DistillConfig, DistillError, distill, source_data
from nmt.distill import workers as distill_workers
from nmt.export.folder import ExportError
from nmt.tokenizer import Tokenizer
from nmt.translate import load
from nmt.weights import WEIGHTS_FILE, WeightsError, read_weights, write_weights

from .toys import SOURCES, toy_exports


@pytest.fixture(scope="module")
def models(tmp_path_factory, toy_tokenizer) -> dict[str, Path]:
    """A toy checkpoint, its weights folder and its CTranslate2 and ONNX exports."""
    root = tmp_path_factory.mktemp("load_errors")
    paths = toy_exports(root, toy_tokenizer)
    paths["weights"] = root / "weights"
    write_weights(load_checkpoint(paths["pytorch"]), paths["weights"])
    return paths


def copy_of(models: dict[str, Path], kind: str, tmp_path: Path) -> Path:
    if kind not in models:
        pytest.skip(f"{kind} is not installed")
    return Path(shutil.copytree(models[kind], tmp_path / kind))


def assert_one_line(error: BaseException, *names: object) -> None:
    message = str(error)
    assert "\n" not in message, message
    for name in names:
        assert str(name) in message, message


# --- safetensors weights: metadata and dtypes (nmt.weights) -----------------------------------


def edit_safetensors(path: Path, edit) -> None:
    """Rewrite the JSON header of a safetensors file with `edit(header)`; the data stays."""
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + size :])


def set_metadata(key: str, value: str | None):
    def edit(header: dict) -> None:
        if value is None:
            del header["__metadata__"][key]
        else:
            header["__metadata__"][key] = value

    return edit


def relabel(name: str, dtype: str):
    def edit(header: dict) -> None:
        header[name]["dtype"] = dtype  # I16 has F16's size: the file still parses

    return edit


WEIGHTS_CASES = {
    "tied names a missing tensor": (
        set_metadata("tied", '[["output.weight", "nope"]]'),
        "nope",
    ),
    "tied is not a list": (set_metadata("tied", '{"a": 1}'), "tied"),
    "tied is not JSON": (set_metadata("tied", "[["), "tied"),
    "no tokenizer_sha256": (set_metadata("tokenizer_sha256", None), "tokenizer_sha256"),
    "model_config is not JSON": (set_metadata("model_config", "{bad"), "model_config"),
    "a tensor relabelled I16": (relabel("embed.weight", "I16"), "embed.weight"),
}


@pytest.mark.parametrize("case", list(WEIGHTS_CASES))
def test_bad_weights_metadata_or_dtype_is_one_line(models, tmp_path, case):
    edit, key = WEIGHTS_CASES[case]
    folder = copy_of(models, "weights", tmp_path)
    edit_safetensors(folder / WEIGHTS_FILE, edit)
    with pytest.raises(WeightsError) as error:
        read_weights(folder)
    assert_one_line(error.value, folder / WEIGHTS_FILE, key)
    with pytest.raises(CheckpointError) as error:  # what every command loads it with
        load_checkpoint(folder / WEIGHTS_FILE)
    assert_one_line(error.value, folder / WEIGHTS_FILE, key)


def test_absurd_model_dimensions_are_one_line(models, tmp_path):
    for changes, key in (({"d_model": 10**9}, "model.d_model"), ({"heads": 0}, "model.heads")):
        with pytest.raises(ConfigError) as error:  # heads 0 divided by zero
            ModelConfig(**changes)
        assert_one_line(error.value, key)
    with pytest.raises(ConfigError, match="model.d_model: must be at most"):
        load_run_config(None, ["model.d_model=1000000000"])
    folder = copy_of(models, "weights", tmp_path)

    def huge(header: dict) -> None:
        config = json.loads(header["__metadata__"]["model_config"])
        header["__metadata__"]["model_config"] = json.dumps({**config, "d_model": 10**9})

    edit_safetensors(folder / WEIGHTS_FILE, huge)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(folder / WEIGHTS_FILE)
    assert_one_line(error.value, folder / WEIGHTS_FILE, "model.d_model")


# --- tokenizers (nmt.tokenizer) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "data, says",
    [(b"junk" * 10, "not a SentencePiece model"), (b"", "(0 bytes)")],
    ids=["junk", "empty"],
)
def test_a_junk_or_empty_sentencepiece_model_is_one_line(tmp_path, capfd, data, says):
    with pytest.raises(ValueError) as error:  # not "special ids are (-1, -1, -1, -1)"
        Tokenizer(data, str(tmp_path / "spm.model"))
    assert_one_line(error.value, tmp_path / "spm.model", says)
    assert capfd.readouterr().err == ""  # no SentencePiece log lines either


# --- export folders (nmt.export.folder.read_info, nmt.backends.ct2) -----------------------------


def edit_json(name: str, edit):
    def apply(folder: Path) -> None:
        path = folder / name
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))

    return apply


def write(name: str, text: str):
    return lambda folder: (folder / name).write_text(text)


EXPORT_CASES = {
    "ct2 info is a list": ("ctranslate2", write("nmt_export.json", "[1, 2]"), "nmt_export.json"),
    "ct2 info is not JSON": ("ctranslate2", write("nmt_export.json", "{bad"), "nmt_export.json"),
    "ct2 info has no tokenizer": (
        "ctranslate2",
        edit_json("nmt_export.json", lambda i: {k: v for k, v in i.items() if k != "tokenizer"}),
        "tokenizer",
    ),
    "onnx info has heads 0": (
        "onnx",
        edit_json(
            "nmt_export.json", lambda i: {**i, "model_config": {**i["model_config"], "heads": 0}}
        ),
        "model.heads",
    ),
    "ct2 eos unknown": (
        "ctranslate2",
        edit_json("config.json", lambda c: {**c, "eos_token": "<zzz>"}),
        "eos_token",
    ),
    "ct2 bos unknown": (
        "ctranslate2",
        edit_json("config.json", lambda c: {**c, "bos_token": "<yyy>"}),
        "bos_token",
    ),
    "ct2 empty vocabulary": (
        "ctranslate2",
        write("shared_vocabulary.json", "[]"),
        "shared_vocabulary.json",
    ),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_a_bad_export_folder_is_one_line(models, tmp_path, case):
    kind, edit, key = EXPORT_CASES[case]
    folder = copy_of(models, kind, tmp_path)
    edit(folder)
    with pytest.raises(ExportError) as error:
        load(folder)
    assert_one_line(error.value, folder, key)


def test_a_junk_tokenizer_in_an_export_is_one_line(models, tmp_path):
    folder = copy_of(models, "ctranslate2", tmp_path)
    (folder / "spm.model").write_bytes(b"junk" * 10)
    with pytest.raises(ValueError) as error:
        load(folder)
    assert_one_line(error.value, folder / "spm.model")


# --- through the CLI: exit status 2 and one line on stderr ---------------------------------------

CLI_CASES = {
    "weights: tied names a missing tensor": (
        "weights",
        WEIGHTS_CASES["tied names a missing tensor"],
    ),
    "ct2 info has no tokenizer": ("ctranslate2", EXPORT_CASES["ct2 info has no tokenizer"][1:]),
    "onnx info has heads 0": ("onnx", EXPORT_CASES["onnx info has heads 0"][1:]),
}


def assert_one_error_line(err: str, *names: object) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert str(name) in lines[0], err


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_the_cli_prints_one_line(models, tmp_path, capsys, case):
    kind, (edit, key) = CLI_CASES[case]
    folder = copy_of(models, kind, tmp_path)
    if kind == "weights":
        edit_safetensors(folder / WEIGHTS_FILE, edit)
    else:
        edit(folder)
    (tmp_path / "in.txt").write_text("a dog runs\n")
    assert translate_main(["-m", str(folder), "-i", str(tmp_path / "in.txt")]) == 2
    assert_one_error_line(capsys.readouterr().err, folder, key)


# --- writes on a full disk name the path (nmt.fileio.errors_naming) ------------------------------


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Writes past `nbytes` fail with EFBIG (as on a full disk, ENOSPC), in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal kills us
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize(
    "fmt, needs, names",
    [
        ("ct2", "ctranslate2", "'{out}'"),  # CTranslate2's own model.bin writer
        ("onnx", "onnx", "'{out}'"),  # torch.onnx.export
        ("safetensors", "pytorch", "'{out}'"),  # safetensors' writer (Rust)
    ],
)
def test_an_export_on_a_full_disk_names_the_path(models, tmp_path, capsys, fmt, needs, names):
    if needs not in models:
        pytest.skip(f"{needs} is not installed")
    out = tmp_path / "out"
    with file_size_limit(100_000):  # below every toy export's largest file
        status = export_main([str(models["pytorch"]), "-o", str(out), "--format", fmt])
    assert status == 2 and not out.exists()
    err = capsys.readouterr().err
    assert_one_error_line(err, f"[Errno {errno.EFBIG}]", names.format(out=out))


# --- a distillation's raw.json (nmt.distill) -----------------------------------------------------


@pytest.mark.parametrize("raw", ['{"tool": "other"}', "[1, 2]", "{bad", '{"job": 3}'])
def test_a_foreign_raw_json_is_one_line(models, tmp_path, monkeypatch, raw):
    class Echo:  # a teacher that answers at once
        def translate(self, lines, **options):
            return [line.upper() for line in lines]

    monkeypatch.setattr(distill_workers, "_load_teacher", lambda teacher, config: Echo())
    (tmp_path / "c").mkdir()
    for lang in ("en", "de"):
        (tmp_path / "c" / f"train.{lang}").write_text("".join(f"{s}\n" for s in SOURCES))
    data, config, out = (
        source_data(str(tmp_path / "c")),
        DistillConfig(chunk_lines=4),
        tmp_path / "d",
    )
    distill(models["pytorch"], data, out, config)
    (out / "raw.json").write_text(raw)
    with pytest.raises(DistillError) as error:
        distill(models["pytorch"], data, out, config)
    assert_one_line(error.value, out / "raw.json")
