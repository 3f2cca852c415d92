"""The one output rule (`nmt.outputs`): what a command may write, replace or delete, and that
every command goes through it. Each defect of the trust review has its test here: a user's
folder taken for a distillation, `nmt-translate -o` inside the model, `nmt-vmap --force`
over an input, and `.lock` / `train.log` links followed out of the folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nmt.cli import distill_main, train_main, translate_main, vmap_main
from nmt.fileio import file_sha256
from nmt.outputs import MARKER, FolderLock, OutputError, claim, file_marker, made_by

from .test_train import toy_overrides
from .toys import random_state, toy_exports


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def one_line_error(capsys, *names: object) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for name in names:
        assert str(name) in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory, toy_tokenizer) -> dict[str, Path]:
    """A random toy checkpoint, its CTranslate2 and ONNX exports, and a run folder."""
    import torch

    root = tmp_path_factory.mktemp("outputs")
    paths = toy_exports(root, toy_tokenizer)
    run = root / "run"
    run.mkdir()
    torch.save(random_state(toy_tokenizer), run / "best.pt")
    (root / "text.txt").write_text("a dog runs\na cat sleeps\n")
    return {**paths, "run": run, "text": root / "text.txt", "root": root}


# --- the rule itself -------------------------------------------------------------------------
def test_a_folder_is_replaced_only_when_its_own_marker_says_so(tmp_path):
    out = tmp_path / "out"
    claim(out, "nmt-a").make()
    assert made_by(out, folder=True) == "nmt-a"
    with pytest.raises(OutputError, match="already exists"):
        claim(out, "nmt-a")
    assert claim(out, "nmt-a", force=True).existed
    assert claim(out, "nmt-a", resumable=True).existed
    with pytest.raises(OutputError, match="was made by nmt-a"):
        claim(out, "nmt-b", force=True)
    (tmp_path / "empty").mkdir()
    assert not claim(tmp_path / "empty", "nmt-a").existed  # an empty folder counts as new
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "stats.json").write_text("{}")  # looks like ours: is not
    with pytest.raises(OutputError, match="not made by nmt-a"):
        claim(tmp_path / "user", "nmt-a", force=True, resumable=True)


def test_a_file_is_ours_only_while_it_holds_what_we_wrote(tmp_path):
    out = tmp_path / "hyp.txt"
    claim(out, "nmt-a", folder=False).write_text("one\n")
    assert json.loads(file_marker(out).read_text())["sha256"] == file_sha256(out)
    claim(out, "nmt-a", folder=False, force=True).write_text("two\n")
    assert out.read_text() == "two\n"
    out.write_text("edited by the user\n")
    with pytest.raises(OutputError, match="not made by nmt-a"):
        claim(out, "nmt-a", folder=False, force=True)
    assert out.read_text() == "edited by the user\n"


def test_an_output_is_never_an_input_nor_inside_one_nor_a_link(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.bin").write_bytes(b"weights")
    for out in (model, model / "model.bin", model / "new", tmp_path):
        with pytest.raises(OutputError, match="holds or lies inside the input"):
            claim(out, "nmt-a", inputs=[model], force=True, folder=out != model / "model.bin")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match="symbolic link"):
        claim(tmp_path / "link", "nmt-a")
    assert (model / "model.bin").read_bytes() == b"weights"


def test_a_failed_stream_leaves_nothing_and_the_old_file(tmp_path):
    out = tmp_path / "out.txt"
    claim(out, "nmt-a", folder=False).write_text("old\n")
    with (
        pytest.raises(RuntimeError),
        claim(out, "nmt-a", folder=False, force=True).open_text() as f,
    ):
        f.write("half")
        raise RuntimeError("killed")
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, file_marker(out).name])


# --- defect 1: nmt-distill took a user's folder for a distillation ----------------------------
def test_distill_never_deletes_a_users_files_without_a_marker(models, tmp_path, capsys):
    user = tmp_path / "u"
    (user / "shards" / "keep").mkdir(parents=True)
    (user / "stats.json").write_text('{"acc": 0.9}\n')
    (user / "shards" / "keep" / "a.txt").write_text("mine\n")
    (user / "shards" / "1-of-2" / "parts").mkdir(parents=True)
    (user / "shards" / "1-of-2" / "parts" / "job.json").write_text("{}")
    data = tmp_path / "toy"
    data.mkdir()
    for lang, text in (("en", "a dog runs\n"), ("de", "ein hund rennt\n")):
        for split in ("train", "val", "test"):
            (data / f"{split}.{lang}").write_text(text * 4)
    before = snapshot(user)
    for extra in ([], ["--force"]):
        args = ["-t", str(models["ctranslate2"]), "--data", str(data), "-o", str(user)]
        assert distill_main([*args, "--beam", "1", *extra]) == 2
        one_line_error(capsys, user, "not made by nmt-distill")
    assert snapshot(user) == before


# --- defect 2: nmt-translate -o inside the model folder ---------------------------------------
@pytest.mark.parametrize(
    "model, inside",
    [("ctranslate2", "model.bin"), ("run", "best.pt"), ("onnx", "encoder.onnx")],
)
def test_translate_never_writes_inside_the_model(models, model, inside, capsys):
    folder = models[model]
    before = snapshot(folder)
    for force in ([], ["--force"]):
        args = ["-m", str(folder), "-i", str(models["text"]), "-o", str(folder / inside)]
        assert translate_main([*args, *force]) == 2
        one_line_error(capsys, folder / inside, "input")
    assert snapshot(folder) == before


def test_translate_replaces_only_its_own_output(models, tmp_path, capsys):
    out = tmp_path / "hyp.txt"
    args = ["-m", str(models["ctranslate2"]), "-i", str(models["text"]), "-o", str(out)]
    assert translate_main(args) == 0
    assert len(out.read_text().splitlines()) == 2
    assert translate_main(args) == 2  # exists: --force replaces it
    one_line_error(capsys, out, "--force")
    assert translate_main([*args, "--force"]) == 0
    mine = tmp_path / "mine.txt"
    mine.write_text("my notes\n")
    args[-1] = str(mine)
    assert translate_main([*args, "--force"]) == 2
    one_line_error(capsys, mine, "not made by nmt-translate")
    assert mine.read_text() == "my notes\n"


# --- defect 3: nmt-vmap --force overwrote any file --------------------------------------------
def test_vmap_force_never_overwrites_an_input_or_a_users_file(models, tmp_path, capsys):
    src, tgt = tmp_path / "train.en", tmp_path / "train.de"
    src.write_text("a dog runs\na cat sleeps\n" * 4)
    tgt.write_text("ein hund rennt\neine katze schläft\n" * 4)
    mine = tmp_path / "notes.txt"
    mine.write_text("mine\n")
    run = models["run"]
    before = {p: file_sha256(p) for p in (src, tgt, mine, run / "best.pt")}
    for target in (src, run / "best.pt", mine):
        args = ["--model", str(run), "--src", str(src), "--tgt", str(tgt), "-o", str(target)]
        assert vmap_main([*args, "--force", "--iterations", "1"]) == 2
        one_line_error(capsys, target)
    assert {p: file_sha256(p) for p in before} == before
    out = tmp_path / "map.txt"
    args = ["--model", str(run), "--src", str(src), "--tgt", str(tgt), "-o", str(out)]
    assert vmap_main([*args, "--iterations", "1"]) == 0
    assert vmap_main([*args, "--iterations", "1", "--force"]) == 0  # its own file: replaced


# --- defect 4: .lock and train.log followed out of the folder ---------------------------------
def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link"), FolderLock(folder, "test"):
        pass
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("link", [".lock", "train.log", MARKER])
def test_train_refuses_a_run_folder_with_a_symlink(toy_corpus, tmp_path, link, capsys):
    run = tmp_path / "run"
    overrides = toy_overrides(run, toy_corpus, "train.max_steps=2", "train.valid_every=100")
    args = [a for o in overrides for a in ("--set", o)]
    assert train_main(args) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run / link).unlink()
    (run / link).symlink_to(victim)
    assert train_main([*args, "--set", "train.max_steps=4", "--resume"]) == 2
    one_line_error(capsys, run)
    assert victim.read_text() == "precious\n"
