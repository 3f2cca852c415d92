"""The allocator nmt-train re-executes itself under (`nmt.allocator`): TCMalloc where it is
installed, else mimalloc from its wheel, else glibc's malloc; `NMT_ALLOCATOR` chooses."""

import os
import subprocess
import sys

import pytest

from nmt import allocator

from .test_train import toy_overrides


def test_the_choice_follows_nmt_allocator(monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: "/lib/libtcmalloc_minimal.so.4")
    monkeypatch.setattr(allocator, "find_mimalloc", lambda: "/lib/libmimalloc.so")
    for wanted, name in [("auto", "tcmalloc"), ("tcmalloc", "tcmalloc"), ("mimalloc", "mimalloc")]:
        monkeypatch.setenv("NMT_ALLOCATOR", wanted)
        assert allocator.choose_allocator()[0] == name
    monkeypatch.setenv("NMT_ALLOCATOR", "mimalloc")
    assert allocator.choose_allocator()[2] == allocator.MIMALLOC_SETTINGS
    monkeypatch.setenv("NMT_ALLOCATOR", "system")
    assert allocator.choose_allocator() is None


def test_without_tcmalloc_mimalloc_is_the_default(monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    monkeypatch.setattr(allocator, "find_mimalloc", lambda: "/lib/libmimalloc.so")
    monkeypatch.delenv("NMT_ALLOCATOR", raising=False)
    assert allocator.choose_allocator()[:2] == ("mimalloc", "/lib/libmimalloc.so")
    monkeypatch.setattr(allocator, "find_mimalloc", lambda: None)
    assert allocator.choose_allocator() is None


@pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD: Linux")
@pytest.mark.parametrize("wanted", ["mimalloc", "system"])
def test_nmt_train_runs_under_the_allocator_chosen(tmp_path, toy_corpus, wanted):
    """The console command re-executes itself with the library preloaded, and its log says
    which allocator the run had."""
    if wanted == "mimalloc" and not allocator.find_mimalloc():
        pytest.skip("cmeel-mimalloc is not installed")
    overrides = toy_overrides(tmp_path / "run", toy_corpus, "train.max_steps=2")
    argv = [os.path.join(os.path.dirname(sys.executable), "nmt-train")]
    argv += [arg for o in overrides for arg in ("--set", o)]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"} | {"NMT_ALLOCATOR": wanted}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"allocator {'mimalloc' if wanted == 'mimalloc' else 'glibc malloc'}" in log
