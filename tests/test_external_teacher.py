"""Models nmt did not make (`nmt.backends.foreign`): a Hugging Face Marian folder converted
on the fly, the converted CTranslate2 folder itself, an Argos package, and multilingual
prefixes, each translating as CTranslate2 and SentencePiece called by hand do; an Argos
package distils with nmt-distill and its files' hashes are in the provenance. Nothing is
downloaded: the models are built here, tiny (d_model 16, one layer each) and random."""

from __future__ import annotations

import io
import json
import shutil
import socket
import sys
import zipfile
from pathlib import Path

import pytest

ctranslate2 = pytest.importorskip("ctranslate2")
import sentencepiece as spm  # noqa: E402

from nmt.backends import convert  # noqa: E402
from nmt.backends.foreign import ForeignTranslator, is_foreign  # noqa: E402
from nmt.bench.cell import load_translator  # noqa: E402
from nmt.bench.grid import Cell, bench_config, expand_cells  # noqa: E402
from nmt.cli import distill_main, translate_main  # noqa: E402
from nmt.config import ConfigError  # noqa: E402
from nmt.fileio import file_sha256  # noqa: E402
from nmt.translate import load as load_model  # noqa: E402

from .conftest import TOY_PAIRS  # noqa: E402
from .toys import toy_argos_package, write_toy_corpus  # noqa: E402

SOURCES = [s for s, _ in TOY_PAIRS]
LINES = [*SOURCES[:4], "", "   ", "a girl reads a book"]
NEEDS_TRANSFORMERS = "transformers not installed (pip install .[convert])"
GREEDY = {"beam_size": 1, "max_char_repeat": 0}  # as by hand: no cleanup of character runs


def load(path: Path, **options: object):
    """`nmt.translate.load` on one thread: the machine may be busy, and CTranslate2 threads
    beyond its cores wait for each other."""
    return load_model(path, threads=1, **options)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Converted models and unpacked packages go to a temporary cache, never ~/.cache."""
    monkeypatch.setenv("NMT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def no_network(monkeypatch):
    """Any connection or name lookup fails the test: nothing may be downloaded."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] or args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def train_spm(lines: list[str], file: Path) -> Path:
    """A small SentencePiece model as Marian's: eos 0, unk 1, no bos or pad."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 4),
        model_writer=model,
        vocab_size=30,
        hard_vocab_limit=False,
        eos_id=0,
        unk_id=1,
        bos_id=-1,
        pad_id=-1,
        minloglevel=2,
    )
    file.write_bytes(model.getvalue())
    return file


def make_marian(folder: Path, languages: tuple[str, ...] = ()) -> Path:
    """A tiny random Marian model saved as `save_pretrained` does (config.json,
    model.safetensors, source.spm, target.spm, vocab.json, ...); `languages`: extra
    vocabulary tokens, such as M2M-100's `__de__`."""
    transformers = pytest.importorskip("transformers", reason=NEEDS_TRANSFORMERS)
    import torch

    work = folder.with_name(folder.name + "-spm")
    work.mkdir(parents=True)
    src = train_spm([s for s, _ in TOY_PAIRS], work / "source.spm")
    tgt = train_spm([t for _, t in TOY_PAIRS], work / "target.spm")
    vocab = {"</s>": 0, "<unk>": 1}
    for file in (src, tgt):
        sp = spm.SentencePieceProcessor(model_file=str(file))
        for i in range(sp.get_piece_size()):
            vocab.setdefault(sp.id_to_piece(i), len(vocab))
    for token in languages:
        vocab[token] = len(vocab)
    vocab["<pad>"] = len(vocab)
    (work / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = transformers.MarianTokenizer(str(src), str(tgt), str(work / "vocab.json"))
    config = transformers.MarianConfig(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=vocab["<pad>"],
        eos_token_id=0,
        decoder_start_token_id=vocab["<pad>"],
        forced_eos_token_id=0,
    )
    torch.manual_seed(0)
    transformers.MarianMTModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def marian(tmp_path_factory) -> Path:
    return make_marian(tmp_path_factory.mktemp("hf") / "opus-mt-toy")


def by_hand(
    model: Path,
    src_spm: Path,
    tgt_spm: Path,
    lines: list[str],
    suffix: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
    beam_size: int = 1,
) -> list[str]:
    """What the CTranslate2 documentation does: SentencePiece pieces (+ suffix) in, the
    target prefix forced, pieces out decoded by the target model; greedy, one line at a
    time with nmt's default length limit (1.5 x source + 10, the EOS CTranslate2 may add
    counted)."""
    translator = ctranslate2.Translator(str(model))
    sp_src = spm.SentencePieceProcessor(model_file=str(src_spm))
    sp_tgt = spm.SentencePieceProcessor(model_file=str(tgt_spm))
    added = json.loads((model / "config.json").read_text()).get("add_source_eos", False)
    out = []
    for line in lines:
        if not line.strip():
            out.append("")
            continue
        source = [*sp_src.encode(line.strip(), out_type=str), *suffix]
        (result,) = translator.translate_batch(
            [source],
            target_prefix=[list(prefix)] if prefix else None,
            beam_size=beam_size,
            max_decoding_length=int(1.5 * (len(source) + added) + 10) + len(prefix),
        )
        out.append(sp_tgt.decode_pieces(result.hypotheses[0][len(prefix) :]))
    return out


# --- a Hugging Face folder, converted --------------------------------------------------------


def test_hf_marian_converts_once_and_translates_as_ctranslate2_does(
    marian, cache, monkeypatch, no_network
):
    assert is_foreign(marian)
    translator = load(marian)
    assert isinstance(translator, ForeignTranslator) and translator.backend == "foreign"
    folder = translator.path
    assert folder.parent == cache / "converted" and (folder / "model.bin").is_file()
    info = json.loads((folder / convert.CONVERTED_INFO).read_text())
    assert info["source_files"]["model.safetensors"] == file_sha256(marian / "model.safetensors")
    assert info["model_type"] == "marian"
    assert translator.source_suffix == ["</s>"]  # Marian's tokenizer closes sources by EOS

    got = translator.translate(LINES, **GREEDY)
    assert got == by_hand(folder, marian / "source.spm", marian / "target.spm", LINES, ("</s>",))
    assert got[4] == got[5] == ""
    assert translator.tokenizer.encode("a dog") == ["▁", "a", "▁", "d", "o", "g"]
    nbest = translator.translate_nbest(LINES[:2], 2, beam_size=2)
    assert [len(h) for h in nbest] == [2, 2]

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(convert, "_convert", no_conversion)
    assert load(marian).translate(LINES, **GREEDY) == got  # from the cache


def test_the_converted_folder_is_a_ctranslate2_model_in_its_own_right(marian, tmp_path):
    translator = load(marian)
    copy = tmp_path / "opus-mt-ct2"
    shutil.copytree(translator.path, copy)
    (copy / convert.CONVERTED_INFO).unlink()  # a folder as ct2-transformers-converter makes
    direct = load(copy)
    assert direct.backend == "foreign" and direct.model.kind == "ctranslate2"
    assert direct.translate(LINES, beam_size=2, max_char_repeat=0) == translator.translate(
        LINES, beam_size=2, max_char_repeat=0
    )


def test_hf_folder_errors(marian, tmp_path, monkeypatch):
    pickled = tmp_path / "pickled"
    shutil.copytree(marian, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="pickled.*safetensors"):
        load(pickled)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"needs transformers: pip install 'nmt\[convert\]'"):
        load(marian)


def test_a_converted_teacher_records_its_source_and_converted_files(marian):
    from nmt.distill import teacher_info

    info = teacher_info(marian)
    foreign = info["foreign"]
    assert foreign["kind"] == "huggingface"
    for name in ("model.safetensors", "source.spm", "target.spm", "vocab.json", "config.json"):
        assert foreign["source_files"][name] == file_sha256(marian / name)
    converted = Path(foreign["converted"]["path"])
    assert foreign["converted"]["files"]["model.bin"] == file_sha256(converted / "model.bin")
    assert info["sha256"] == convert.fingerprint(foreign["source_files"])


# --- tokenizers and prefixes -----------------------------------------------------------------


def test_target_prefix_is_forced_and_removed(tmp_path, monkeypatch, no_network):
    hf = make_marian(tmp_path / "m2m-toy", languages=("__de__", "__fr__"))
    with pytest.raises(ConfigError, match="multilingual.*--target-prefix") as e:
        load(hf)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"--target-prefix 'xx': not a token of .*__de__"):
        load(hf, target_prefix="xx")

    translator = load(hf, target_prefix="de")  # stands for __de__
    assert translator.target_prefix == ["__de__"]
    calls = []
    real = translator.translator

    class Spy:
        def translate_batch(self, sources, **kwargs):
            calls.append(kwargs["target_prefix"])
            return real.translate_batch(sources, **kwargs)

    monkeypatch.setattr(translator, "translator", Spy())
    got = translator.translate(LINES, **GREEDY)
    assert calls == [[["__de__"]] * 5]
    expected = by_hand(
        translator.path, hf / "source.spm", hf / "target.spm", LINES, ("</s>",), ("__de__",)
    )
    assert got == expected
    assert not any("__de__" in line for line in got)  # removed from the output

    # nmt-translate takes it as a flag
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("".join(f"{line}\n" for line in LINES), encoding="utf-8")
    argv = [
        "-m",
        str(hf),
        "-i",
        str(src),
        "-o",
        str(out),
        "--beam",
        "1",
        "--threads",
        "1",
        "--max-char-repeat",
        "0",
    ]
    assert translate_main([*argv, "--target-prefix", "__de__"]) == 0
    assert out.read_text(encoding="utf-8").splitlines() == got

    # nmt-distill too, and the prefix is part of the job: another prefix, another translation
    corpus, distilled = write_toy_corpus(tmp_path / "toy"), tmp_path / "distilled"
    argv = ["--teacher", str(hf), "--data", str(corpus), "-o", str(distilled), "--beam", "1"]
    argv += ["--valid", "val", "--test", "val", "--threads", "1"]
    assert distill_main([*argv, "--target-prefix", "de"]) == 0
    expected = translator.translate(SOURCES * 8, beam_size=1, max_batch_tokens=2048)
    assert (distilled / "raw.de").read_text(encoding="utf-8").splitlines() == expected
    job = json.loads((distilled / "raw.json").read_text())["job"]
    assert job["target_prefix"] == "de"


def test_marian_target_language_tokens_need_a_source_prefix(tmp_path):
    hf = make_marian(tmp_path / "opus-mt-en-mul-toy", languages=(">>deu<<", ">>fra<<"))
    with pytest.raises(ConfigError, match=r"tokens such as >>deu<<.*--source-prefix"):
        load(hf)
    translator = load(hf, source_prefix=">>deu<<")
    assert translator.source_prefix == [">>deu<<"] and translator.target_prefix == []
    sp = spm.SentencePieceProcessor(model_file=str(hf / "source.spm"))
    pieces = translator.tokenizer.encode_pieces(["a dog runs"])[0]
    assert pieces == sp.encode("a dog runs", out_type=str)
    source = [">>deu<<", *pieces, "</s>"]
    (result,) = translator.translator.translate_batch(
        [source], beam_size=1, max_decoding_length=int(1.5 * len(source) + 10)
    )
    tgt = spm.SentencePieceProcessor(model_file=str(hf / "target.spm"))
    expected = tgt.decode_pieces(result.hypotheses[0])
    assert translator.translate(["a dog runs"], **GREEDY) == [expected]


def test_missing_or_wrong_tokenizer_is_one_line(marian, tmp_path, monkeypatch):
    bare = tmp_path / "bare"
    shutil.copytree(load(marian).path, bare)
    for name in ("source.spm", "target.spm"):
        (bare / name).unlink()
    with pytest.raises(ConfigError, match=r"bare: no tokenizer found .*--tokenizer$"):
        load(bare)
    # given by hand, it works; the wrong one (another corpus) is refused
    ok = load(bare, tokenizer_files=[marian / "source.spm", marian / "target.spm"])
    assert ok.translate(LINES[:2], **GREEDY) == load(marian).translate(LINES[:2], **GREEDY)
    other = train_spm(["zzz qqq xxx yyy www vvv"] * 5, tmp_path / "other.spm")
    with pytest.raises(ConfigError, match=r"other.spm: only \d+% of its pieces are tokens"):
        load(bare, tokenizer_files=[other])
    # a tokenizer.json needs the tokenizers library
    (bare / "tokenizer.json").write_text("{}", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(ConfigError, match="tokenizer.json: .*needs the tokenizers library"):
        load(bare)


# --- nmt-bench: a grid's model entry takes the options ---------------------------------------


def bench_cells(folder: Path, **entry: object) -> list[Cell]:
    """The cells of a bench grid of one model entry, greedy, on the toy sources."""
    src = folder / "test.en"
    src.write_text("".join(f"{s}\n" for s in SOURCES), encoding="utf-8")
    raw = {
        "models": [{"name": "m", **entry}],
        "test_sets": [{"name": "toy", "src": str(src), "ref": str(src)}],
        "grid": {"beam_sizes": [1]},
    }
    return expand_cells(bench_config(raw))


def test_a_bench_cell_loads_a_foreign_model_with_its_prefixes(tmp_path, no_network):
    hf = make_marian(tmp_path / "m2m-toy", languages=("__de__", "__fr__"))
    (plain,) = bench_cells(tmp_path, path=str(hf))
    with pytest.raises(ConfigError, match="multilingual.*--target-prefix"):
        load_translator(plain)
    (cell,) = bench_cells(tmp_path, path=str(hf), target_prefix="de", source_suffix="")
    assert cell.backend == "foreign" and (cell.target_prefix, cell.source_suffix) == ("de", "")
    # the same cell name (--compare matches it), another measurement
    assert cell.cell_id == plain.cell_id and cell.spec_hash != plain.spec_hash
    sent = Cell.from_dict(json.loads(json.dumps(cell.to_dict())))  # to its process
    assert sent.spec_hash == cell.spec_hash and sent.load_options() == cell.load_options()
    translator = load_translator(cell)
    assert translator.target_prefix == ["__de__"]
    assert translator.source_suffix == []  # "": none, not the default </s>
    expected = load(hf, target_prefix="de", source_suffix="")
    assert translator.translate(LINES, **GREEDY) == expected.translate(LINES, **GREEDY)


def test_a_bench_cell_gives_a_foreign_model_its_tokenizer(marian, tmp_path, monkeypatch):
    bare = tmp_path / "bare"
    shutil.copytree(load(marian).path, bare)
    for name in ("source.spm", "target.spm"):
        shutil.move(bare / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)  # relative paths are resolved as `path` is
    (cell,) = bench_cells(tmp_path, path="bare", tokenizer=["source.spm", "target.spm"])
    assert cell.tokenizer == tuple(
        str((tmp_path / n).resolve()) for n in ("source.spm", "target.spm")
    )
    assert {"source.spm", "target.spm"} <= set(cell.model_files)  # in its size on disk
    translator = load_translator(cell)
    assert translator.translate(LINES, **GREEDY) == load(marian).translate(LINES, **GREEDY)


# --- Argos packages --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package(tmp_path_factory, toy_tokenizer) -> Path:
    """An Argos package of a random toy nmt model, made by nmt-export --format argos."""
    return toy_argos_package(tmp_path_factory.mktemp("argos"), toy_tokenizer)


def test_argos_package_translates_as_ctranslate2_does(package, cache):
    translator = load(package)
    assert translator.backend == "foreign" and translator.model.kind == "argos"
    folder = translator.path.parent  # unpacked into the cache
    assert folder.is_relative_to(cache) and (folder / "metadata.json").is_file()
    tok = folder / "sentencepiece.model"
    got = translator.translate(LINES, **GREEDY)
    assert got == by_hand(translator.path, tok, tok, LINES)  # nmt's export: CT2 adds EOS
    assert load(folder).translate(LINES, **GREEDY) == got  # an installed package folder


def test_an_argos_package_distils_and_its_files_are_in_the_provenance(package, tmp_path):
    corpus = write_toy_corpus(tmp_path / "toy")
    out = tmp_path / "distilled"
    argv = ["--teacher", str(package), "--data", str(corpus), "-o", str(out), "--beam", "1"]
    assert distill_main([*argv, "--valid", "val", "--test", "val", "--threads", "1"]) == 0
    expected = load(package).translate(SOURCES * 8, beam_size=1, max_batch_tokens=2048)
    assert (out / "raw.de").read_text(encoding="utf-8").splitlines() == expected
    teacher = json.loads((out / "provenance.json").read_text())["teacher"]
    assert teacher["backend"] == "foreign"
    foreign = teacher["foreign"]
    assert foreign["kind"] == "argos"
    assert foreign["archive"]["sha256"] == file_sha256(package)
    unpacked = Path(foreign["unpacked"])
    for name in ("model/model.bin", "sentencepiece.model", "metadata.json"):
        assert foreign["files"][name] == file_sha256(unpacked / name)
    assert foreign["tokenizer_files"] == ["sentencepiece.model"]
    # text only: the student trains its own tokenizer, nothing of the teacher's is offered
    assert not [p for p in out.iterdir() if p.suffix in (".model", ".spm")]


def test_a_tokenizer_json_tokenizes_as_its_sentencepiece_model(package, tmp_path):
    tokenizers = pytest.importorskip("tokenizers", reason="tokenizers not installed")
    translator = load(package)
    sp = spm.SentencePieceProcessor(model_file=str(translator.path.parent / "sentencepiece.model"))
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = tokenizers.Tokenizer(tokenizers.models.Unigram(vocab, unk_id=sp.unk_id()))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace(prepend_scheme="always")
    tok.decoder = tokenizers.decoders.Metaspace(prepend_scheme="always")
    tok.add_special_tokens(["<pad>", "<s>", "</s>"])  # as a real tokenizer.json lists them
    folder = tmp_path / "ct2-with-tokenizer-json"
    shutil.copytree(translator.path, folder)
    for name in ("nmt_export.json", "spm.model"):  # no longer nmt's export: a foreign one
        (folder / name).unlink()
    tok.save(str(folder / "tokenizer.json"))
    other = load(folder)
    assert other.model.tokenizers == (folder / "tokenizer.json",)
    assert other.translate(LINES, **GREEDY) == translator.translate(LINES, **GREEDY)


def unsafe_archive(path: Path, name: str, symlink: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg/metadata.json", "{}")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = 0o120777 << 16  # a symbolic link
        z.writestr(info, "/etc/passwd" if symlink else "x")
    return path


@pytest.mark.parametrize(
    ("name", "symlink", "error"),
    [
        ("../evil", False, "unsafe entry name"),
        ("/abs/evil", False, "unsafe entry name"),
        ("pkg/link", True, "is a link or special file"),
        ("pkg/model/config.json", False, r"holds no Argos package"),
    ],
)
def test_an_unsafe_archive_is_refused(tmp_path, cache, name, symlink, error):
    archive = unsafe_archive(tmp_path / "bad.argosmodel", name, symlink)
    with pytest.raises(ConfigError, match=error):
        load(archive)
    assert not (tmp_path / "evil").exists()
    assert not any(p.name == "pkg" for p in cache.rglob("*"))  # nothing left half-unpacked
