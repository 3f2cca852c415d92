"""Prepared shards are checked when read: nmt-prepare re-makes a shard that is no longer the
file its manifest lists (size, sha256), alone; nmt-train (any reader of the manifest) stops
with one line naming a shard whose sha256 differs, whose offsets do not index its tokens, or
whose token ids lie outside the vocabulary."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from nmt.prepare import shards
from nmt.prepare.folder import check_prepared, prepare
from nmt.prepare.manifest import load_manifest
from nmt.prepare.shards import ShardError

from .test_prepare import config, decoded, shard_files, toy_pairs, write_parallel

TAMPERED = "toy.00002.shard"


@pytest.fixture
def prepared(toy_tokenizer, tmp_path):
    """A prepared toy corpus (six shards, every pair in one window) and its config."""
    prefix = write_parallel(tmp_path / "data" / "toy", toy_pairs())
    c = config(("toy", prefix, 1.0), mixing="concat")
    prepare(c, toy_tokenizer, tmp_path / "out")
    return tmp_path / "out", c


def rewrite(path: Path, name: str, change) -> None:
    """Replace the array `name` of the shard at `path` by `change(array)`, in place."""
    header, start = shards._read_header(path)
    offset, kind, count = shards._layout(header, start)[0][name]
    data = bytearray(path.read_bytes())
    end = offset + count * np.dtype(kind).itemsize
    array = np.frombuffer(bytes(data[offset:end]), dtype=kind).copy()
    data[offset:end] = np.asarray(change(array), dtype=kind).tobytes()
    path.write_bytes(bytes(data))


def reseal(out: Path, name: str) -> None:
    """Make the manifest list the shard `name` as it now is, so only the bounds check is
    left to catch what was changed in it."""
    manifest = json.loads((out / "manifest.json").read_text())
    path = out / "shards" / name
    for shard in manifest["shards"]:
        if shard["file"].endswith(name):
            shard["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))


def swap_a_token(tokens: np.ndarray) -> np.ndarray:
    """Another id in the vocabulary: the shard still decodes, to other pairs."""
    tokens[0] = 5 if tokens[0] != 5 else 6
    return tokens


def read_all(out: Path) -> None:
    decoded(load_manifest(out).corpus())


def assert_one_line(error: Exception, *words: str) -> None:
    message = str(error)
    assert "\n" not in message and f"shards/{TAMPERED}" in message, message
    assert "run nmt-prepare again" in message and all(w in message for w in words), message


def test_nmt_prepare_remakes_an_edited_shard_alone(prepared, toy_tokenizer, caplog):
    out, c = prepared
    made = shard_files(out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    rewrite(out / "shards" / TAMPERED, "src_tokens", swap_a_token)
    assert f"{TAMPERED} is damaged (sha256" in check_prepared(c, toy_tokenizer, out)
    with caplog.at_level(logging.WARNING, logger="nmt.prepare.folder"):
        prepare(c, toy_tokenizer, out)
    assert f"{TAMPERED} is damaged (sha256" in caplog.text and "making it again" in caplog.text
    assert shard_files(out) == made and check_prepared(c, toy_tokenizer, out) is None
    after = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    assert {n for n in after if after[n] != before[n]} == {TAMPERED}


def test_an_edited_shard_stops_the_reader_in_one_line(prepared):
    out, _ = prepared
    read_all(out)
    rewrite(out / "shards" / TAMPERED, "src_tokens", swap_a_token)
    with pytest.raises(ShardError) as caught:
        read_all(out)
    assert_one_line(caught.value, "sha256")


def nmt_train(out: Path, capsys) -> str:
    """nmt-train on the prepared folder `out` (toy model, two steps): exit 2 and the one
    line of error it printed."""
    from nmt.cli import train_main

    from .test_train import toy_overrides
    from .toys import write_toy_corpus

    valid = write_toy_corpus(out.parent / "toy")
    run = toy_overrides(out.parent / "run", valid, f"data.prepared={out}", "train.max_steps=2")
    assert train_main([x for o in run for x in ("--set", o)]) == 2
    assert not (out.parent / "run" / "last.pt").exists()
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and f"shards/{TAMPERED}: damaged (" in err, err
    return err


def test_nmt_train_on_an_edited_shard_exits_with_one_line(prepared, capsys):
    out, _ = prepared
    rewrite(out / "shards" / TAMPERED, "tgt_tokens", swap_a_token)
    assert "damaged (sha256" in nmt_train(out, capsys)


def test_a_token_id_outside_the_vocabulary_is_one_line(prepared, capsys):
    out, _ = prepared

    def beyond(tokens: np.ndarray) -> np.ndarray:
        tokens[-1] = 60  # the toy vocabulary is 0..59
        return tokens

    rewrite(out / "shards" / TAMPERED, "tgt_tokens", beyond)
    reseal(out, TAMPERED)
    with pytest.raises(ShardError) as caught:
        read_all(out)
    assert_one_line(caught.value, "tgt token ids", "..60, vocabulary 0..59")
    assert "vocabulary 0..59" in nmt_train(out, capsys)


@pytest.mark.parametrize(
    "side, change, words",
    [
        ("src", lambda o: o[[0, 2, 1, *range(3, len(o))]], "offsets decrease at pair 1"),
        ("tgt", lambda o: o + np.arange(len(o)), "offsets run 0.."),
        ("src", lambda o: o - 1, "offsets run -1.."),
    ],
)
def test_offsets_out_of_order_or_past_the_end_are_one_line(
    prepared, toy_tokenizer, side, change, words
):
    out, c = prepared
    made = shard_files(out)
    rewrite(out / "shards" / TAMPERED, f"{side}_offsets", change)
    reseal(out, TAMPERED)
    with pytest.raises(ShardError) as caught:
        read_all(out)
    assert_one_line(caught.value, f"{side} {words}")
    prepare(c, toy_tokenizer, out)  # what the error says to run: the shard is made again
    assert shard_files(out) == made
    read_all(out)
