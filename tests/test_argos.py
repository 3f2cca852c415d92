"""Argos Translate packages: the real Argos client installs one and translates with the
network off, exactly as nmt's CTranslate2 backend does under Argos's decoding settings;
the package file follows the export rules (atomic, --force only over nmt's packages).

Argos 1.11's decoding (argostranslate/translate.py, `apply_packaged_translation`, lines
504-513; settings.py:170-174): beam 4, length penalty 0.2, CTranslate2's default
max_decoding_length (256), unknown tokens replaced from the source, batches of 32 tokens,
compute type "auto", no vocabulary map: `nmt.export.argos.NMT_DECODING` is the same for
`CT2Translator.translate`. Argos also splits each paragraph into sentences (MiniSBD, here
the package's rule-based model) and joins their target pieces before detokenizing, so a
paragraph's translation equals nmt's translations of its sentences joined by spaces.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import shutil
import socket
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("ctranslate2")
pytest.importorskip("onnx")
pytest.importorskip("argostranslate", reason="Argos Translate not installed (pip install .[argos])")

from nmt.backends.ct2 import CT2Translator  # noqa: E402
from nmt.checkpoint import find_checkpoint, load_checkpoint  # noqa: E402
from nmt.cli import export_main  # noqa: E402
from nmt.export import export  # noqa: E402
from nmt.export.argos import (  # noqa: E402
    ARGOS_DECODING,
    NMT_DECODING,
    PROVENANCE_FILE,
    is_nmt_package,
    read_package_info,
)
from nmt.export.argos_card import training_data  # noqa: E402
from nmt.export.ct2 import export_ct2  # noqa: E402
from nmt.fileio import file_sha256  # noqa: E402
from nmt.outputs import OutputError, file_marker  # noqa: E402
from nmt.training.run import train  # noqa: E402

from .conftest import TOY_PAIRS  # noqa: E402
from .test_train import toy_config  # noqa: E402

# The toy pairs as sentences (capital, full stop), so that the splitter has work to do.
PAIRS = [(s.capitalize() + ".", t.capitalize() + ".") for s, t in TOY_PAIRS]
SOURCES = [s for s, _ in PAIRS]
PARAGRAPHS = [
    f"{SOURCES[0]} {SOURCES[1]}",
    f"{SOURCES[2]} {SOURCES[3]} {SOURCES[4]}",
    f"{SOURCES[5]}  {SOURCES[6]}",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> SimpleNamespace:
    """A toy model trained on PAIRS, and its Argos package made from the run folder."""
    root = tmp_path_factory.mktemp("argos")
    corpus = root / "toy"
    corpus.mkdir()
    for split, reps in (("train", 8), ("val", 1)):
        (corpus / f"{split}.en").write_text("".join(f"{s}\n" for s, _ in PAIRS) * reps)
        (corpus / f"{split}.de").write_text("".join(f"{t}\n" for _, t in PAIRS) * reps)
    train(toy_config(root / "run", corpus, "train.max_steps=200", "train.save_every=1000"))
    package = export(root / "run", root / "toy.argosmodel", format="argos")
    return SimpleNamespace(root=root, run=root / "run", package=package)


@pytest.fixture(scope="module")
def argos(tmp_path_factory):
    """Argos Translate with every folder it uses (data, config, cache, packages, MiniSBD's
    model cache) in a temporary home: nothing touches ~."""
    home = tmp_path_factory.mktemp("argos-home")
    env = {
        "XDG_DATA_HOME": home / "data",
        "XDG_CONFIG_HOME": home / "config",
        "XDG_CACHE_HOME": home / "cache",
        "ARGOS_PACKAGES_DIR": home / "packages",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, str(value))
        for name in ("ARGOS_CHUNK_TYPE", "ARGOS_MODEL_PROVIDER", "ARGOS_PACKAGE_INDEX", "SNAP"):
            mp.delenv(name, raising=False)
        imported = "argostranslate.settings" in sys.modules
        settings = importlib.import_module("argostranslate.settings")
        from argostranslate import package, sbd, translate

        if imported:  # by an earlier test, with other folders: point them here
            data = home / "data" / "argos-translate"
            mp.setattr(settings, "data_dir", data)
            mp.setattr(settings, "package_data_dir", env["ARGOS_PACKAGES_DIR"])
            mp.setattr(settings, "package_dirs", [env["ARGOS_PACKAGES_DIR"]])
            mp.setattr(settings, "local_package_index", data / "index.json")
            mp.setattr(sbd.minisbd_models, "cache_dir", str(data / "minisbd"))
        for folder in (settings.package_data_dir, settings.data_dir, settings.cache_dir):
            assert Path(folder).resolve().is_relative_to(home.resolve()), folder
        translate.get_installed_languages.cache_clear()
        yield SimpleNamespace(package=package, translate=translate, settings=settings, home=home)
        translate.get_installed_languages.cache_clear()
        translate.installed_translates.clear()


@pytest.fixture
def no_network(monkeypatch):
    """Any connection or name lookup outside loopback fails the test."""

    def loopback(host) -> bool:
        if host in ("localhost", "", None):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def check(address) -> None:
        if isinstance(address, tuple) and not loopback(address[0]):
            raise AssertionError(f"network access attempted: connect to {address}")

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not loopback(host if not isinstance(host, bytes) else host.decode()):
            raise AssertionError(f"network access attempted: look up {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="module")
def installed(trained, argos) -> Path:
    argos.package.install_from_path(trained.package)
    (folder,) = [p for p in argos.settings.package_data_dir.iterdir() if p.is_dir()]
    return folder


def test_argos_decodes_with_the_settings_nmt_compares_under(argos):
    """The comparison below uses ARGOS_DECODING; these are Argos's defaults here."""
    s = argos.settings
    assert (s.beam_size, s.batch_size, s.compute_type) == (
        ARGOS_DECODING["beam_size"],
        ARGOS_DECODING["max_batch_size"],
        ARGOS_DECODING["compute_type"],
    )
    assert s.chunk_type == s.ChunkType.ARGOSTRANSLATE  # MiniSBD, the package's model


def test_argos_translates_offline_as_nmt_does(trained, argos, installed, no_network):
    """Sentences and paragraphs through `argostranslate.translate.translate` with the network
    blocked equal nmt's CTranslate2 translations of the same sentences, same settings."""
    nmt = CT2Translator(installed / "model", threads=1, compute_type=ARGOS_DECODING["compute_type"])
    options = NMT_DECODING
    sentences = nmt.translate(SOURCES, **options)
    assert sum(a == t for a, (_, t) in zip(sentences, PAIRS, strict=True)) >= 6  # it learnt
    for source, expected in zip(SOURCES, sentences, strict=True):
        assert argos.translate.translate(source, "en", "de") == expected
    for paragraph in PARAGRAPHS:
        parts = [s for s in SOURCES if s in paragraph]
        expected = " ".join(nmt.translate(parts, **options))
        assert argos.translate.translate(paragraph, "en", "de") == expected
    # two paragraphs (lines) stay two lines
    text = f"{PARAGRAPHS[0]}\n{SOURCES[7]}"
    lines = argos.translate.translate(text, "en", "de").split("\n")
    assert lines == [" ".join(nmt.translate(SOURCES[:2], **options)), sentences[7]]
    minisbd_cache = argos.settings.data_dir / "minisbd"
    assert not minisbd_cache.exists() or not any(minisbd_cache.iterdir())  # nothing fetched


def test_without_the_bundled_splitter_argos_would_download_one(argos, installed, no_network):
    """Why the package ships `minisbd/`: without it Argos's MiniSBD fetches a model from
    GitHub at first use (here the guard stops it), so the test above proves the offline path."""
    bare = argos.home / "bare" / installed.name
    shutil.copytree(installed, bare, ignore=shutil.ignore_patterns("minisbd"))
    pkg = argos.package.Package(bare)
    assert pkg.packaged_sbd_path is None
    en, de = argos.translate.Language("en", "English"), argos.translate.Language("de", "German")
    with pytest.raises(AssertionError, match="network access attempted"):
        argos.translate.PackageTranslation(en, de, pkg).translate(SOURCES[0])


def test_the_bundled_splitter_splits_sentences(installed, no_network):
    from minisbd import SBDetect

    (model,) = (installed / "minisbd").glob("*.onnx")
    split = SBDetect(str(model), use_gpu=False).sentences
    assert split(PARAGRAPHS[1]) == SOURCES[2:5]
    assert split('He said "Stop!" Then he left. (Really.) Yes? No…  Fine') == [
        'He said "Stop!"',
        "Then he left.",
        "(Really.)",
        "Yes?",
        "No…",
        "Fine",
    ]
    # no split before lower case, inside numbers, addresses or without a space
    for text in ("See e.g. the dog.", "It costs 3.50 euros.", "Go to www.example.com now.", "A.B"):
        assert split(text) == [text]
    assert split("") == []


def test_package_holds_what_argos_reads_and_its_provenance(trained):
    with zipfile.ZipFile(trained.package) as z:
        names = z.namelist()
        tops = {n.split("/", 1)[0] for n in names}
        assert tops == {"nmt-translate-en_de-1_0"}
        top = tops.pop()
        files = {n.split("/", 1)[1] for n in names}
        assert {
            "metadata.json",
            "sentencepiece.model",
            "README.md",
            PROVENANCE_FILE,
            "model/model.bin",
            "model/config.json",
            "model/shared_vocabulary.json",
            "model/spm.model",
            "model/nmt_export.json",
            "minisbd/nmt-rules.onnx",
        } <= files
        metadata = json.loads(z.read(f"{top}/metadata.json"))
        provenance = json.loads(z.read(f"{top}/{PROVENANCE_FILE}"))
        card = z.read(f"{top}/README.md").decode()
        assert z.read(f"{top}/sentencepiece.model") == z.read(f"{top}/model/spm.model")
        export_info = json.loads(z.read(f"{top}/model/nmt_export.json"))
    assert metadata == {
        "package_version": "1.0",
        "argos_version": "1.11",
        "from_code": "en",
        "from_name": "English",
        "to_code": "de",
        "to_name": "German",
        "type": "translate",
        "links": [],
        "dependencies": [],
    }
    ckpt = find_checkpoint(trained.run)
    state = load_checkpoint(ckpt)
    assert provenance["tokenizer"]["sha256"] == state["tokenizer_sha256"]
    assert provenance["source"] == str(ckpt)
    assert provenance["source_kind"] == "checkpoint"
    assert provenance["nmt_version"] == state["nmt_version"]
    assert export_info["quantization"] == provenance["quantization"] == "int8"
    assert provenance["sentence_splitter"]["kind"] == "nmt-rules"
    assert read_package_info(trained.package) == provenance
    assert "English -> German" in card and "licence" in card
    assert "Not recorded in the source" in card  # the toy corpus is no registered dataset


def test_training_data_names_the_licence():
    multi30k = training_data({"run_config": {"data": {"dataset": "multi30k"}}}, "")
    assert "non-commercial" in multi30k["corpora"][0]["licence"]
    tatoeba = training_data(None, "# A model\nTrained on Tatoeba pairs.")
    assert tatoeba["corpora"][0]["licence"].startswith("CC BY 2.0")
    assert training_data(None, "no data named")["corpora"] == []


def test_a_ct2_export_is_packaged_as_it_is(trained, tmp_path, capsys):
    ckpt = find_checkpoint(trained.run)
    ct2 = export_ct2(load_checkpoint(ckpt), tmp_path / "ct2", quantization="int8")
    out = tmp_path / "ct2.argosmodel"
    argv = [str(ct2), "-o", str(out), "--format", "argos"]
    assert export_main(argv) == 2  # an export records no languages
    assert "give --from and --to" in capsys.readouterr().err
    assert export_main([*argv, "--from", "en", "--to", "de", "--version", "2.1"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with zipfile.ZipFile(out) as z:
        top = "nmt-translate-en_de-2_1"
        assert z.read(f"{top}/model/model.bin") == (ct2 / "model.bin").read_bytes()
        assert json.loads(z.read(f"{top}/metadata.json"))["package_version"] == "2.1"
        info = json.loads(z.read(f"{top}/{PROVENANCE_FILE}"))
    assert info["source"] == str(ct2) and info["source_kind"] == "ctranslate2-export"


def test_refuses_to_overwrite_without_force(trained, tmp_path):
    out = tmp_path / "p.argosmodel"
    export(trained.run, out, format="argos")
    before = file_sha256(out)
    with pytest.raises(FileExistsError, match="force"):
        export(trained.run, out, format="argos")
    assert file_sha256(out) == before
    export(trained.run, out, format="argos", force=True, version="1.1")  # ours: replaced
    assert read_package_info(out)["metadata"]["package_version"] == "1.1"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [file_marker(out).name]  # no temporaries, only the marker


@pytest.mark.parametrize(
    "content",
    [
        b"my own notes",
        None,  # a zip of the user's, with one folder and a metadata.json (a foreign package)
    ],
)
def test_force_replaces_only_a_package_nmt_made(trained, tmp_path, content):
    out = tmp_path / "user.argosmodel"
    if content is None:
        with zipfile.ZipFile(out, "w") as z:
            z.writestr("translate-en_de-1_0/metadata.json", "{}")
    else:
        out.write_bytes(content)
    before = out.read_bytes()
    with pytest.raises(OutputError, match="not made by nmt-export"):
        export(trained.run, out, format="argos", force=True)
    assert out.read_bytes() == before
    assert not is_nmt_package(out)


def test_force_never_replaces_a_folder(trained, tmp_path):
    out = tmp_path / "folder.argosmodel"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a file"):
        export(trained.run, out, format="argos", force=True)
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "args, message",
    [
        (["MISSING", "-o", "x.argosmodel"], "no checkpoint found"),
        (["RUN", "-o", "x.zip"], "ends in .argosmodel"),
        (["RUN", "-o", "x.argosmodel", "--from", "EN"], "ISO 639"),
        (["RUN", "-o", "x.argosmodel", "--from", "de", "--to", "de"], "both 'de'"),
        (["RUN", "-o", "x.argosmodel", "--version", "1 beta"], "package version"),
        (["RUN", "-o", "x.argosmodel", "--sbd-model", "none.onnx"], "not a MiniSBD model"),
        (
            [
                "CT2",
                "-o",
                "x.argosmodel",
                "--from",
                "en",
                "--to",
                "de",
                "--quantization",
                "float32",
            ],
            "packaged as it is",
        ),
    ],
)
def test_bad_input_is_one_line(trained, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    ct2 = trained.root / "ct2-for-errors"
    if not ct2.exists():
        export_ct2(load_checkpoint(find_checkpoint(trained.run)), ct2, quantization="int8")
    paths = {"RUN": str(trained.run), "CT2": str(ct2), "MISSING": str(tmp_path / "missing")}
    argv = [paths.get(a, a) for a in args] + ["--format", "argos"]
    assert export_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.argosmodel").exists() and not (tmp_path / "x.zip").exists()


def test_argos_options_need_the_argos_format(trained, tmp_path):
    with pytest.raises(SystemExit):
        export_main([str(trained.run), "-o", str(tmp_path / "o"), "--from", "en"])
