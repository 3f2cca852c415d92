"""Bad input never becomes a traceback or a bad model: corpora, configs, checkpoints,
exports, translation input and a full disk, each through the real command-line path.

A user error ends `nmt-train` / `nmt-translate` with exit status 2 and one line
`error: FILE[:LINE]: ...` on stderr; documented handling (CRLF, control characters,
over-long pairs, blank or over-long translation input) is counted in the log.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nmt.checkpoint import CheckpointError, load_checkpoint
from nmt.cli import train_main, translate_main
from nmt.config import ModelConfig, TokenizerConfig
from nmt.export.ct2 import EXPORT_INFO, export_ct2
from nmt.model import Transformer
from nmt.outputs import MARKER
from nmt.tokenizer import train_tokenizer
from nmt.translate import load, translate_stream

from .conftest import TOY_PAIRS

EN = "".join(f"{s}\n" for s, _ in TOY_PAIRS).encode()  # one copy of the toy pairs
DE = "".join(f"{t}\n" for _, t in TOY_PAIRS).encode()
TRAIN_EN, TRAIN_DE = EN * 8, DE * 8  # 64 lines


def toy_sets(run_dir: Path, data_dir: Path, *extra: str) -> list[str]:
    """`nmt-train` arguments for a tiny model on a corpus folder (train.* and val.*)."""
    sets = [
        f"run_dir={run_dir}",
        f"data.data_dir={data_dir}",
        "data.valid=val",
        "tokenizer.vocab_size=60",
        "tokenizer.byte_fallback=false",
        "model.d_model=32",
        "model.heads=4",
        "model.ffn=64",
        "model.enc_layers=1",
        "model.dec_layers=1",
        "model.dropout=0.0",
        "model.max_positions=64",
        "train.precision=fp32",
        "train.threads=1",
        "train.batch_tokens=64",
        "train.warmup_steps=5",
        "train.log_every=5",
        "train.valid_every=1000",
        "train.valid_bleu=false",
        "train.save_every=5",
        "train.max_steps=10",
        *extra,
    ]
    return [arg for s in sets for arg in ("--set", s)]


def write_corpus(folder: Path, src: bytes | None = None, tgt: bytes | None = None) -> Path:
    """Toy train/val files; `src`/`tgt` replace the bytes of train.en/train.de."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.en").write_bytes(TRAIN_EN if src is None else src)
    (folder / "train.de").write_bytes(TRAIN_DE if tgt is None else tgt)
    (folder / "val.en").write_bytes(EN)
    (folder / "val.de").write_bytes(DE)
    return folder


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---- bad corpora ----------------------------------------------------------------------

BAD_CORPORA = {
    "mismatched line counts": (
        TRAIN_EN,
        TRAIN_DE[: TRAIN_DE.rindex(b"\n", 0, -1) + 1],  # the last line left out
        r"train\.de:64: line missing",
    ),
    "invalid UTF-8": (
        TRAIN_EN.replace(b"two men", b"two \xff\xfemen", 1),
        TRAIN_DE,
        r"train\.en:3: invalid UTF-8",
    ),
    "empty files": (b"", b"", r"train\.en: empty corpus"),
    "one empty file": (TRAIN_EN, b"", r"train\.de:1: line missing"),
    "only blank lines": (b"\n \n", b"\n\n", r"train\.en: every line is blank"),
}


@pytest.mark.parametrize("case", list(BAD_CORPORA))
def test_bad_corpus_is_one_line_naming_file_and_line(tmp_path, capsys, case):
    src, tgt, message = BAD_CORPORA[case]
    data = write_corpus(tmp_path / "data", src, tgt)
    assert train_main(toy_sets(tmp_path / "run", data)) == 2
    line = one_line_error(capsys)
    assert line.startswith(f"error: {data}") and re.search(message, line), line


def test_missing_corpus_file_is_one_line(tmp_path, capsys):
    data = write_corpus(tmp_path / "data")
    (data / "train.de").unlink()
    assert train_main(toy_sets(tmp_path / "run", data)) == 2
    assert one_line_error(capsys) == f"error: {data / 'train.de'}: file not found (data.train)"
    assert not (tmp_path / "run").exists()  # nothing created for a run that cannot start


def test_crlf_and_control_characters_are_cleaned_and_counted(tmp_path, caplog):
    src = (
        TRAIN_EN.replace(b"\n", b"\r\n").replace(b"a dog", b"a\x00dog").replace(b"cat", b"c\x07at")
    )
    data = write_corpus(tmp_path / "data", src, TRAIN_DE.replace(b"\n", b"\r\n"))
    assert train_main(toy_sets(tmp_path / "run", data)) == 0
    assert "stripped the CR of CRLF line endings on 64 lines" in caplog.text
    assert "replaced control characters (NUL, ...) by spaces on 16 lines" in caplog.text
    sp = load(tmp_path / "run").tokenizer.sp
    assert not any("\r" in sp.id_to_piece(i) for i in range(sp.get_piece_size()))


def test_over_long_lines_are_dropped_and_counted(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nmt")
    long_line = (b"a dog runs " * 9091)[:100_000] + b"\n"
    data = write_corpus(tmp_path / "data", TRAIN_EN + long_line, TRAIN_DE + b"ein hund\n")
    (data / "val.en").write_bytes((data / "val.en").read_bytes() + long_line)
    (data / "val.de").write_bytes((data / "val.de").read_bytes() + long_line)
    sets = toy_sets(tmp_path / "run", data, "train.valid_every=5", "train.valid_bleu=true")
    assert train_main(sets) == 0
    assert "kept 64 of 65 pairs (removed: 0 empty, 0 too short, 1 too long" in caplog.text
    assert "valid data (loss only): kept 8 of 9 pairs" in caplog.text
    assert "truncated to the model's maximum" in caplog.text  # validation BLEU translated it


# ---- bad configs ----------------------------------------------------------------------

BAD_CONFIGS = {
    "train:\n  lrate: 0.1\n": r"train\.lrate: unknown key",
    "model:\n  d_model: big\n": r"model\.d_model: expected int",
    "model:\n  d_model: 256\n  heads: 3\n": r"model\.heads: must divide model\.d_model",
    "train:\n  lr: -0.001\n": r"train\.lr: must be positive",
    "tokenizer:\n  vocab_size: 200\n": r"tokenizer\.vocab_size: must be at least 261",
    "train:\n  keep_last: 2\n  average_last: 5\n": r"train\.average_last: cannot exceed",
    "model: 5\n": r"model: expected a mapping",
    "train:\n  lr: 0.1\n bad indent: 1\n": r"run\.yaml:\d+: invalid YAML",
}


@pytest.mark.parametrize("text", list(BAD_CONFIGS))
def test_bad_config_is_one_line_naming_the_key(tmp_path, capsys, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert train_main(["--config", str(path), "--set", f"run_dir={tmp_path / 'run'}"]) == 2
    line = one_line_error(capsys)
    assert re.search(BAD_CONFIGS[text], line), line
    assert not (tmp_path / "run").exists()


def test_bad_override_is_one_line(tmp_path, capsys):
    assert train_main(["--set", "model.heads=five", "--set", f"run_dir={tmp_path}"]) == 2
    assert "model.heads: expected int" in one_line_error(capsys)


# ---- checkpoints and exports that do not fit --------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    data = write_corpus(root / "data")
    assert train_main(toy_sets(root / "run", data)) == 0
    return root / "run"


def rewrite(src: Path, dst: Path, **changes) -> Path:
    state = torch.load(src, weights_only=True)  # our own checkpoint: data only
    state.update(changes)
    torch.save(state, dst)
    return dst


def test_incompatible_checkpoints_are_one_line_errors(trained_run, tmp_path, capsys):
    last = trained_run / "last.pt"
    state = load_checkpoint(last)
    newer_config = dict(state["model_config"], rope=True)
    bad = {
        "format 99": rewrite(last, tmp_path / "v99.pt", format_version=99),
        "model_config: model.rope: unknown key": rewrite(
            last, tmp_path / "newer.pt", model_config=newer_config
        ),
        "weights do not match model_config": rewrite(
            last, tmp_path / "shapes.pt", model_config=dict(state["model_config"], ffn=32)
        ),
    }
    flipped = bytearray(last.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # inside a tensor record
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    bad["CRC mismatch"] = tmp_path / "flipped.pt"
    (tmp_path / "torn.pt").write_bytes(last.read_bytes()[:1000])
    bad["not a readable checkpoint"] = tmp_path / "torn.pt"
    for message, path in bad.items():
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path)
        assert translate_main(["-m", str(path), "-i", os.devnull]) == 2
        line = one_line_error(capsys)
        assert line.startswith(f"error: {path}: ") and message in line, line


def test_resume_from_a_foreign_last_pt_is_one_line(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text('{"kind": "nmt-train"}')  # a run folder from elsewhere
    data = trained_run.parent / "data"
    rewrite(trained_run / "last.pt", run / "last.pt", format_version=99)
    assert train_main([*toy_sets(run, data), "--resume"]) == 2
    assert one_line_error(capsys).startswith(f"error: {run / 'last.pt'}: checkpoint format 99")
    rewrite(trained_run / "best.pt", run / "last.pt")  # weights only: cannot resume
    assert train_main([*toy_sets(run, data), "--resume"]) == 2
    assert "not a resume state (no optimizer" in one_line_error(capsys)


def test_incompatible_exports_are_one_line_errors(trained_run, tmp_path, capsys):
    state = load_checkpoint(trained_run / "last.pt")
    for name in ("newer", "torn"):
        export_ct2(state, tmp_path / name)
    info = json.loads((tmp_path / "newer" / EXPORT_INFO).read_text())
    (tmp_path / "newer" / EXPORT_INFO).write_text(json.dumps(dict(info, format_version=2)))
    model_bin = tmp_path / "torn" / "model.bin"
    model_bin.write_bytes(model_bin.read_bytes()[:100])
    for name, message in (("newer", "unsupported export format"), ("torn", "cannot load")):
        assert translate_main(["-m", str(tmp_path / name), "-i", os.devnull]) == 2
        assert message in one_line_error(capsys)


# ---- disk full ------------------------------------------------------------------------


def fail_nth_write(monkeypatch, name: str, nth: int) -> None:
    """Make the `nth` atomic write of a file called `name` fail with ENOSPC, once its
    temporary file is written (at its fsync), as a full disk would."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to tell which file an fsync is for")
    real_fsync, seen = os.fsync, []

    def fsync(fd: int) -> None:
        target = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if target.startswith(f".{name}.") and target.endswith(".tmp"):
            seen.append(target)
            if len(seen) == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("name", ["last.pt", "step_15.pt"])
def test_full_disk_fails_clearly_and_the_last_checkpoint_resumes(
    tmp_path, capsys, monkeypatch, name
):
    data = write_corpus(tmp_path / "data")
    sets = toy_sets(tmp_path / "run", data, "train.max_steps=20")
    fail_nth_write(monkeypatch, name, 3 if name == "last.pt" else 1)  # at step 15
    assert train_main(sets) == 2
    line = one_line_error(capsys)
    path = tmp_path / "run" / ("" if name == "last.pt" else "checkpoints") / name
    assert line.startswith(f"error: {path}: cannot write checkpoint")
    assert "No space left on device" in line and "--resume" in line
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 10
    assert not [*tmp_path.rglob(".*.tmp")]  # the temporary file was removed
    monkeypatch.undo()

    assert train_main([*sets, "--resume"]) == 0
    assert train_main(toy_sets(tmp_path / "reference", data, "train.max_steps=20")) == 0
    a = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "reference" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


# ---- translation input ----------------------------------------------------------------


@pytest.fixture(scope="module")
def byte_fallback_models(tmp_path_factory):
    """A randomly initialised tiny model with a byte-fallback tokenizer (so it reads any
    text and may write any byte, line breaks included), as a checkpoint and a CTranslate2
    export, with a short position table so that truncation is common."""
    root = tmp_path_factory.mktemp("bytes")
    lines = [*(s for s, _ in TOY_PAIRS), *(t for _, t in TOY_PAIRS)] * 4
    tokenizer = train_tokenizer(lines, TokenizerConfig(vocab_size=300), root / "spm.model")
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        d_model=16,
        heads=2,
        ffn=32,
        enc_layers=1,
        dec_layers=1,
        dropout=0.0,
        max_positions=24,
    )
    torch.manual_seed(0)
    state = {
        "format_version": 1,
        "model": Transformer(config).state_dict(),
        "model_config": dataclasses.asdict(config),
        "tokenizer_model": tokenizer.model_proto,
        "tokenizer_sha256": tokenizer.sha256(),
    }
    torch.save(state, root / "model.pt")
    export_ct2(state, root / "ct2")
    return {"pytorch": root / "model.pt", "ctranslate2": root / "ct2"}


@pytest.fixture(scope="module")
def translators(byte_fallback_models):
    return {name: load(path, threads=1) for name, path in byte_fallback_models.items()}


AWKWARD = [
    "",
    "   ",
    "\t",
    "a dog runs " * 40,  # longer than the model's 24 positions
    "😀🎉 a dog 🐕",
    "مرحبا بالعالم",  # right to left
    "שלום עולם",
    "你好，世界。日本語のテキスト",
    "a\x00b\x07c",
    "\u200b\u2028\u2029\x85",
    "\ufeffbom",
]


@pytest.mark.parametrize("backend", ["pytorch", "ctranslate2"])
def test_awkward_lines_from_a_file_keep_one_line_each(
    byte_fallback_models, tmp_path, caplog, backend
):
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("\n".join(AWKWARD) + "\n", encoding="utf-8")
    argv = ["-m", str(byte_fallback_models[backend]), "-i", str(src), "-o", str(out)]
    assert translate_main([*argv, "--beam", "2"]) == 0
    lines = out.read_bytes().split(b"\n")
    assert len(lines) == len(AWKWARD) + 1 and lines[-1] == b""
    assert lines[:3] == [b"", b"", b""]
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(AWKWARD)
    assert "truncated to the model's maximum" in caplog.text


@pytest.mark.parametrize("backend", ["pytorch", "ctranslate2"])
def test_invalid_utf8_on_stdin_keeps_one_line_each(
    byte_fallback_models, tmp_path, capsys, monkeypatch, backend
):
    data = b"a dog\n\xff\xfe broken\n\n\xc3\x28 half\r\nlast line without newline"
    (tmp_path / "stdin").write_bytes(data)
    with open(tmp_path / "stdin", "rb") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        assert translate_main(["-m", str(byte_fallback_models[backend]), "--beam", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 5 and len(out.splitlines()) == 5
    assert out.split("\n")[2] == ""


def test_missing_input_file_is_one_line(byte_fallback_models, tmp_path, capsys):
    missing = tmp_path / "missing.txt"
    assert translate_main(["-m", str(byte_fallback_models["pytorch"]), "-i", str(missing)]) == 2
    assert str(missing) in one_line_error(capsys)


# Any code point, lone surrogates and line breaks included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=60)


@pytest.mark.parametrize("backend", ["pytorch", "ctranslate2"])
def test_random_unicode_gives_one_line_per_line(translators, backend):
    translator = translators[backend]

    @settings(max_examples=500, deadline=None, database=None)
    @given(st.lists(ANY_TEXT, max_size=4))
    def check(lines):
        out = translator.translate(lines, beam_size=1)
        assert len(out) == len(lines) and all(isinstance(t, str) for t in out)
        assert all(t == "" for t, line in zip(out, lines, strict=True) if not line.strip())
        streamed = list(translate_stream(translator, lines, beam_size=1))
        assert len(streamed) == len(lines)
        assert all(len(t.splitlines()) <= 1 for t in streamed)

    check()
