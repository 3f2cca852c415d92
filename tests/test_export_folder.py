"""What `nmt-export --force` may replace (an earlier export, nothing else) and that the
promise "never overwritten without --force" holds when two exports race."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nmt.cli import export_main
from nmt.export import export
from nmt.export.folder import EXPORT_INFO
from nmt.outputs import Output

from .toys import random_state


@pytest.fixture
def run(tmp_path, toy_tokenizer) -> Path:
    """A run folder with a checkpoint, a log and a summary, beside a user's other files."""
    run = tmp_path / "project" / "run"
    run.mkdir(parents=True)
    torch.save(random_state(toy_tokenizer), run / "last.pt")
    (run / "train.log").write_text("log\n")
    (tmp_path / "project" / "thesis").mkdir()
    (tmp_path / "project" / "thesis" / "chapter1.tex").write_text("mine\n")
    return run


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_force_replaces_an_earlier_export_only(run, capsys):
    project = run.parent
    out = project / "exp"
    assert export_main([str(run), "-o", str(out)]) == 0
    (out / "model.bin").write_bytes(b"stale")
    assert export_main([str(run), "-o", str(out)]) == 2  # exists: needs --force
    assert export_main([str(run), "-o", str(out), "--force"]) == 0
    assert (out / "model.bin").read_bytes() != b"stale"
    capsys.readouterr()

    before = snapshot(project)
    for victim in (run, project, run / "last.pt", project / "thesis"):
        assert export_main([str(run), "-o", str(victim), "--force"]) == 2, victim
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(victim) in err[0], err
    assert snapshot(project) == before  # every file survives, byte for byte


def test_force_never_replaces_an_export_holding_the_input(run, tmp_path):
    out = tmp_path / "exp"
    export(run, out)
    torch.save(torch.load(run / "last.pt", weights_only=True), out / "inside.pt")
    with pytest.raises(Exception, match="holds or lies inside the input"):
        export(out / "inside.pt", out, force=True)
    assert (out / "inside.pt").is_file() and (out / EXPORT_INFO).is_file()


def test_an_export_published_meanwhile_is_not_replaced(run, tmp_path, monkeypatch):
    """The check at the start is not enough: the first export to finish wins, the other
    fails at publish time and leaves the winner's folder as it was."""
    out = tmp_path / "exp"
    real_publish = Output._publish_folder

    def publish_after_a_rival(self, staging, workdir):
        monkeypatch.setattr(Output, "_publish_folder", real_publish)
        export(run, self.path, quantization="int8")  # the rival finishes first
        real_publish(self, staging, workdir)

    monkeypatch.setattr(Output, "_publish_folder", publish_after_a_rival)
    with pytest.raises(FileExistsError, match="meanwhile"):
        export(run, out)
    assert '"int8"' in (out / EXPORT_INFO).read_text()  # the rival's export, intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_two_concurrent_exports_exactly_one_succeeds(run, tmp_path):
    out = tmp_path / "exp"
    command = [sys.executable, "-m", "nmt", "export", str(run), "-o", str(out)]
    procs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = sorted(p.wait(timeout=120) for p in procs)
    errors = [p.stderr.read() for p in procs]
    assert codes == [0, 2], errors
    assert (out / EXPORT_INFO).is_file()


def test_a_long_output_name_works(run, tmp_path):
    out = tmp_path / ("m" * 250)  # legal (255 bytes at most); temporaries must stay legal
    export(run, out)
    assert (out / EXPORT_INFO).is_file()
