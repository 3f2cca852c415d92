"""Translate with models this toolkit did not make: any CTranslate2 translator folder (an
OPUS-MT or NLLB conversion, ...), an Argos Translate package (`nmt.backends.argos_package`)
or a Hugging Face seq2seq folder converted on the fly (`nmt.backends.convert`), each with
its own tokenization; `ForeignTranslator` has `CT2Translator`'s interface.

A foreign CTranslate2 folder is `model.bin` + `config.json` + its vocabulary files, without
nmt's `nmt_export.json`. Its tokenizer is found beside it, in this order: `source.spm` and
`target.spm` (OPUS-MT), one joint SentencePiece model (`JOINT_SPM`), or a Hugging Face
`tokenizer.json` (read with the `tokenizers` library); `tokenizer_files` overrides them (one
joint file, or the source's and the target's). A tokenizer whose pieces are mostly missing
from the model's vocabulary is refused: it would translate into garbage without an error.

The tokens around a sentence follow rules a reader can check in the folder's files:

- source suffix: the model's EOS when its decoder starts from EOS (Marian, M2M-100, NLLB,
  mBART conversions from Transformers, trained on sources closed by EOS) unless its
  `config.json` has CTranslate2 append it (`add_source_eos`: OPUS-MT, nmt's own exports);
- target prefix: a multilingual model's vocabulary holds language tokens (M2M-100's
  `__de__`, NLLB's `deu_Latn`); it then needs `target_prefix`, given (`--target-prefix`,
  `de` standing for `__de__` where that is a token) or, for an Argos package, its
  metadata's `target_prefix`; the prefix is removed from the output;
- source prefix: `source_prefix` (NLLB's `eng_Latn`, M2M-100's `__en__`), required when
  the source vocabulary holds Marian's target-language tokens (`>>deu<<`).

Every token given must be in the vocabulary of its side: an unknown one is a one-line
ConfigError naming the vocabulary file. Decoding follows `nmt.decoding.Decoding` as
`CT2Translator` does (one length limit per call, each output cut to its own), without the
PAD/BOS suppression that only nmt's vocabulary needs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt.backends import argos_package
from nmt.backends.argos_package import is_argos_archive, is_argos_package, package_folder
from nmt.backends.base import Hypothesis, cap_char_runs
from nmt.backends.convert import (
    converted,
    fingerprint,
    is_hf_seq2seq,
    read_converted_info,
    source_files,
)
from nmt.config import ConfigError
from nmt.decoding import (
    Decoding,
    cap_threads,
    check_nbest,
    decoding_of,
    fits_in_memory,
    is_out_of_memory,
    out_of_memory,
)
from nmt.export.folder import CT2_MODEL_FILE, EXPORT_INFO
from nmt.fileio import file_sha256
from nmt.inputs import encode_nonblank

log = logging.getLogger(__name__)

SOURCE_SPM, TARGET_SPM = "source.spm", "target.spm"
JOINT_SPM = (
    "spm.model",
    "sentencepiece.model",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
)
HF_TOKENIZER = "tokenizer.json"
MAX_INPUT = 1024  # CTranslate2's default max_input_length: source tokens, specials included
MIN_VOCAB_SHARE = 0.5  # of a tokenizer's pieces that must be in the model's vocabulary
# Language tokens: M2M-100 (__de__, __zh_Hans__?), NLLB (deu_Latn); Marian's (>>deu<<).
TARGET_LANGUAGE = re.compile(r"^(__[a-z]{2,3}(_[A-Za-z]+)?__|[a-z]{3}_[A-Z][a-z]{3})$")
SOURCE_LANGUAGE = re.compile(r"^>>[a-z]{2,3}(_[A-Za-z]+)?<<$")
LANGUAGE = re.compile(f"{TARGET_LANGUAGE.pattern}|{SOURCE_LANGUAGE.pattern}")


def is_foreign_ct2(path: Path) -> bool:
    """A CTranslate2 model folder that nmt did not export (no `nmt_export.json`)."""
    return (
        (path / CT2_MODEL_FILE).is_file()
        and (path / "config.json").is_file()
        and not (path / EXPORT_INFO).exists()
    )


def is_foreign(path: Path) -> bool:
    """The recogniser of `nmt.translate.BACKENDS`: a foreign CTranslate2 folder, an Argos
    package, or a Hugging Face seq2seq folder (judged by its files)."""
    return is_foreign_ct2(path) or is_argos_package(path) or is_hf_seq2seq(path)


@dataclass(frozen=True)
class ForeignModel:
    """What a foreign model path resolves to: its kind, the CTranslate2 folder that runs it,
    its tokenizer files (one joint, or source and target) and a default target prefix."""

    kind: str  # "ctranslate2", "argos" or "huggingface"
    path: Path  # as given
    ct2_dir: Path
    tokenizers: tuple[Path, ...]
    target_prefix: str | None = None


def resolve(path: str | Path, tokenizer_files: Sequence[str | Path] = ()) -> ForeignModel:
    """The `ForeignModel` of `path`; an Argos archive is unpacked and a Hugging Face folder
    converted first (both cached). ConfigError naming the file when it is none of them or
    has no tokenizer."""
    path = Path(path)
    prefix = None
    if is_argos_package(path):
        kind, folder = "argos", package_folder(path)
        ct2_dir = folder / "model"
        metadata = argos_package.read_metadata(folder)
        prefix = metadata.get("target_prefix") or None
        found = _tokenizers(folder, (argos_package.TOKENIZER,)) if not tokenizer_files else ()
    elif is_hf_seq2seq(path):
        kind, ct2_dir = "huggingface", converted(path)
        found = _tokenizers(ct2_dir) if not tokenizer_files else ()
    elif is_foreign_ct2(path):
        kind, ct2_dir = "ctranslate2", path
        found = _tokenizers(path) if not tokenizer_files else ()
    else:
        raise ConfigError(
            f"{path}: not a CTranslate2 model folder (model.bin, config.json), an Argos "
            "package or a Hugging Face seq2seq folder"
        )
    if tokenizer_files:
        if len(tokenizer_files) > 2:
            raise ConfigError("--tokenizer: one joint tokenizer, or the source's and the target's")
        found = tuple(Path(f) for f in tokenizer_files)
        for f in found:
            if not f.is_file():
                raise FileNotFoundError(f"{f}: tokenizer file not found")
    return ForeignModel(kind, path, ct2_dir, found, prefix)


def _tokenizers(folder: Path, joint: Sequence[str] = JOINT_SPM) -> tuple[Path, ...]:
    """The tokenizer files in `folder`, in the order of the module's docstring."""
    if (folder / SOURCE_SPM).is_file() and (folder / TARGET_SPM).is_file():
        return folder / SOURCE_SPM, folder / TARGET_SPM
    for name in (*joint, HF_TOKENIZER):
        if (folder / name).is_file():
            return (folder / name,)
    raise ConfigError(
        f"{folder}: no tokenizer found ({SOURCE_SPM} and {TARGET_SPM}, "
        f"{', '.join(joint)} or {HF_TOKENIZER}): give one with --tokenizer"
    )


class _Pieces:
    """One tokenizer file, text <-> pieces: a SentencePiece model or a `tokenizer.json`."""

    def __init__(self, file: Path):
        self.file = file
        if file.name.endswith(".json"):
            try:
                import tokenizers
            except ImportError:
                raise ConfigError(
                    f"{file}: reading a Hugging Face tokenizer needs the tokenizers library "
                    "(pip install tokenizers)"
                ) from None
            try:
                self.hf = tokenizers.Tokenizer.from_file(str(file))
            except Exception as e:  # its parser's own error types
                raise ConfigError(f"{file}: not a Hugging Face tokenizer ({e})") from None
            self.sp = None
        else:
            import sentencepiece as spm

            try:
                self.sp = spm.SentencePieceProcessor(model_file=str(file))
            except (OSError, RuntimeError) as e:
                reason = " ".join(str(e).split())
                raise ConfigError(f"{file}: not a SentencePiece model ({reason})") from None
            self.hf = None

    def encode(self, lines: list[str]) -> list[list[str]]:
        if self.sp is not None:
            lines = [line.encode("utf-8", "replace").decode("utf-8") for line in lines]
            return self.sp.encode(lines, out_type=str)
        return [e.tokens for e in self.hf.encode_batch(lines, add_special_tokens=False)]

    def decode(self, pieces: list[list[str]]) -> list[str]:
        if self.sp is not None:
            return [self.sp.decode_pieces(p) for p in pieces]
        ids = [[i for i in map(self.hf.token_to_id, p) if i is not None] for p in pieces]
        return self.hf.decode_batch(ids, skip_special_tokens=True)

    def pieces(self) -> list[str]:
        """The pieces it produces (special ones left out)."""
        if self.sp is not None:
            sp = self.sp
            ids = range(sp.get_piece_size())
            return [sp.id_to_piece(i) for i in ids if not (sp.is_control(i) or sp.is_unknown(i))]
        return list(self.hf.get_vocab())


class ForeignTokenizer:
    """A foreign model's tokenization: `encode` (source text -> pieces: what nmt-serve
    counts) and `decode` (target pieces -> text)."""

    def __init__(self, files: tuple[Path, ...]):
        self.files = files
        self.source_side = _Pieces(files[0])
        self.target_side = _Pieces(files[-1]) if len(files) > 1 else self.source_side
        self.source = " + ".join(map(str, files))

    def encode(self, text: str | list[str]) -> list[str] | list[list[str]]:
        """The source pieces of one text, or of each of a list of texts."""
        if isinstance(text, str):
            return self.source_side.encode([text])[0]
        return self.source_side.encode(list(text))

    def encode_pieces(self, lines: list[str]) -> list[list[str]]:
        return self.source_side.encode(lines)

    def decode(self, pieces: list[list[str]]) -> list[str]:
        return self.target_side.decode(pieces)


def read_vocabulary(folder: Path, side: str) -> tuple[Path, list[str]]:
    """(file, tokens) of a CTranslate2 folder's vocabulary for `side` ("source" or
    "target"): `shared_vocabulary` or `SIDE_vocabulary`, as .json (CTranslate2 >= 3) or
    .txt (one token a line)."""
    for stem in ("shared_vocabulary", f"{side}_vocabulary"):
        for suffix in (".json", ".txt"):
            file = folder / f"{stem}{suffix}"
            if not file.is_file():
                continue
            text = file.read_text(encoding="utf-8")
            if suffix == ".txt":
                return file, text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
            try:
                tokens = json.loads(text)
            except ValueError as e:
                raise ConfigError(f"{file}: not valid JSON ({e})") from None
            if not isinstance(tokens, list):
                raise ConfigError(f"{file}: a JSON {type(tokens).__name__}, not a list")
            return file, tokens
    raise ConfigError(f"{folder}: no {side} vocabulary (shared_vocabulary.json or .txt)")


def _read_config(folder: Path) -> dict[str, Any]:
    return argos_package.read_json_object(folder / "config.json", "CTranslate2's config ")


def _tokens(value: str, vocabulary: set[str], file: Path, flag: str) -> list[str]:
    """The tokens of a prefix or suffix option, each in `vocabulary` (`de` may stand for
    `__de__`); ConfigError naming `flag` and the vocabulary `file` otherwise."""
    tokens = []
    for token in value.split():
        if token not in vocabulary and f"__{token}__" in vocabulary:
            token = f"__{token}__"
        if token not in vocabulary:
            known = sorted(t for t in vocabulary if LANGUAGE.match(t))
            hint = f" (language tokens there: {', '.join(known[:8])}, ...)" if known else ""
            raise ConfigError(f"{flag} {token!r}: not a token of {file}{hint}")
        tokens.append(token)
    return tokens


def _languages(vocabulary: list[str], pattern: re.Pattern[str]) -> list[str]:
    return [t for t in vocabulary if pattern.match(t)]


class ForeignTranslator:
    """Translate with a foreign model (see the module's docstring) on CPU or CUDA."""

    backend = "foreign"

    def __init__(
        self,
        model: ForeignModel,
        device: str = "cpu",
        threads: int = 0,
        compute_type: str = "default",
        inter_threads: int = 1,
        source_prefix: str | None = None,
        source_suffix: str | None = None,
        target_prefix: str | None = None,
    ):
        threads = cap_threads(threads, "threads")
        inter_threads = cap_threads(inter_threads, "inter_threads", minimum=1)
        self.model, self.path = model, model.ct2_dir
        self.source = str(model.path)
        self.tokenizer = ForeignTokenizer(model.tokenizers)
        config = _read_config(self.path)
        src_file, src_vocab = read_vocabulary(self.path, "source")
        tgt_file, tgt_vocab = read_vocabulary(self.path, "target")
        _check_share(self.tokenizer.source_side, set(src_vocab), src_file)
        _check_share(self.tokenizer.target_side, set(tgt_vocab), tgt_file)
        self.source_prefix, self.source_suffix, self.target_prefix = _special_tokens(
            config, src_file, src_vocab, tgt_file, tgt_vocab,
            source_prefix, source_suffix, target_prefix or model.target_prefix,
        )  # fmt: skip
        self.add_eos = int(bool(config.get("add_source_eos"))) + int(
            bool(config.get("add_source_bos"))
        )
        specials = len(self.source_prefix) + len(self.source_suffix) + self.add_eos
        self.max_input = MAX_INPUT - specials  # source pieces
        if not fits_in_memory(self.path):
            raise ConfigError(out_of_memory(self.path))
        import ctranslate2  # imported only to load a model

        try:
            self.translator = ctranslate2.Translator(
                str(self.path),
                device=device,
                compute_type=compute_type,
                inter_threads=inter_threads,
                intra_threads=threads,
            )
        except (MemoryError, RuntimeError, ValueError) as e:
            if is_out_of_memory(e):
                raise ConfigError(out_of_memory(self.path)) from None
            reason = " ".join(str(e).split())
            raise ConfigError(
                f"{self.path}: CTranslate2 {ctranslate2.__version__} cannot load it: {reason}"
            ) from None
        self.device, self.threads, self.compute_type = device, threads, compute_type

    def translate(
        self, lines: list[str], decoding: Decoding | None = None, **options: object
    ) -> list[str]:
        """Translate `lines` under `decoding` (or its fields as keyword `options`); empty or
        whitespace-only lines give "" without reaching the model."""
        return [h[0].text for h in self.translate_nbest(lines, 1, decoding, **options)]

    def translate_nbest(
        self, lines: list[str], n: int, decoding: Decoding | None = None, **options: object
    ) -> list[list[Hypothesis]]:
        """The `n` best translations of each line (at most the beam size), best first, with
        CTranslate2's scores; the first is `translate`'s. A blank line has one, ""."""
        options.pop("use_vmap", None)  # a foreign model has no nmt vocabulary map
        d = decoding_of(decoding, **options)  # a ConfigError before any work
        n = check_nbest(n, d)
        outputs = [[Hypothesis("", 0.0)] for _ in lines]
        todo, pieces = encode_nonblank(lines, self.tokenizer.encode_pieces, self.max_input)
        if not pieces:
            return outputs
        sources = [[*self.source_prefix, *p, *self.source_suffix] for p in pieces]
        limits = [
            min(max(int(d.max_len_a * (len(s) + self.add_eos) + d.max_len_b), 1), MAX_INPUT)
            for s in sources
        ]
        prefix = self.target_prefix
        results = self.translator.translate_batch(
            sources,
            target_prefix=[prefix] * len(sources) if prefix else None,
            max_decoding_length=max(limits) + len(prefix),
            min_decoding_length=min(d.min_len, max(limits)) + len(prefix),
            max_batch_size=d.max_batch_tokens,
            batch_type="tokens",
            beam_size=d.beam_size,
            num_hypotheses=n,
            return_scores=True,
            length_penalty=d.length_penalty,
            max_input_length=0,  # truncated above
            no_repeat_ngram_size=d.no_repeat_ngram_size,
            repetition_penalty=d.repetition_penalty,
        )
        for k, r in enumerate(results):
            hyps = [h[len(prefix) :] if h[: len(prefix)] == prefix else h for h in r.hypotheses]
            texts = self.tokenizer.decode([h[: limits[k]] for h in hyps])
            outputs[todo[k]] = [
                Hypothesis(cap_char_runs(text, d.max_char_repeat), score)
                for text, score in zip(texts, r.scores, strict=True)
            ]
        return outputs


def _check_share(pieces: _Pieces, vocabulary: set[str], file: Path) -> None:
    """ConfigError unless most of the tokenizer's pieces are tokens of `file`."""
    own = pieces.pieces()
    share = sum(p in vocabulary for p in own) / max(len(own), 1)
    if share < MIN_VOCAB_SHARE:
        raise ConfigError(
            f"{pieces.file}: only {share:.0%} of its pieces are tokens of {file}: not this "
            "model's tokenizer (give the right one with --tokenizer)"
        )


def _special_tokens(
    config: dict[str, Any],
    src_file: Path,
    src_vocab: list[str],
    tgt_file: Path,
    tgt_vocab: list[str],
    source_prefix: str | None,
    source_suffix: str | None,
    target_prefix: str | None,
) -> tuple[list[str], list[str], list[str]]:
    """(source prefix, source suffix, target prefix) tokens, by the module's rules."""
    src_set, tgt_set = set(src_vocab), set(tgt_vocab)
    if target_prefix is None and len(found := _languages(tgt_vocab, TARGET_LANGUAGE)) > 1:
        raise ConfigError(
            f"{tgt_file}: a multilingual model (language tokens such as "
            f"{', '.join(found[:3])}): give the target language with --target-prefix"
        )
    if source_prefix is None and len(found := _languages(src_vocab, SOURCE_LANGUAGE)) > 1:
        raise ConfigError(
            f"{src_file}: a multilingual model (target-language tokens such as "
            f"{', '.join(found[:3])}): give one with --source-prefix"
        )
    if source_suffix is None:
        eos = config.get("eos_token")
        from_eos = eos is not None and config.get("decoder_start_token") == eos
        source_suffix = eos if from_eos and not config.get("add_source_eos") else ""
    return (
        _tokens(source_prefix or "", src_set, src_file, "--source-prefix"),
        _tokens(source_suffix, src_set, src_file, "--source-suffix"),
        _tokens(target_prefix or "", tgt_set, tgt_file, "--target-prefix"),
    )


def model_info(path: str | Path) -> dict[str, Any]:
    """Where a foreign model comes from, for provenance: its kind, its files with sha256
    (a converted model: the source folder's and the converted folder's; an archive: its own
    and its unpacked files') and a fingerprint over the files that define it."""
    model = resolve(path)
    info: dict[str, Any] = {"kind": model.kind}
    if model.kind == "huggingface":
        sources = source_files(Path(path).resolve())
        info["source_files"] = sources
        info["converted"] = {"path": str(model.ct2_dir), "files": _files(model.ct2_dir)}
        info["conversion"] = read_converted_info(model.ct2_dir)
        info["sha256"] = fingerprint(sources)
        return info
    root = model.ct2_dir.parent if model.kind == "argos" else model.ct2_dir
    files = _files(root)
    if is_argos_archive(Path(path)):
        info["archive"] = {"file": str(Path(path).resolve()), "sha256": file_sha256(Path(path))}
        info["unpacked"] = str(root)
    info["files"] = files
    info["tokenizer_files"] = [str(f.relative_to(root)) for f in model.tokenizers]
    info["sha256"] = fingerprint(files)
    return info


def _files(folder: Path) -> dict[str, str]:
    """Every file under `folder`, by relative path, with its sha256."""
    return {
        f.relative_to(folder).as_posix(): file_sha256(f)
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def load_foreign(
    path: str | Path,
    device: str = "cpu",
    threads: int = 0,
    compute_type: str = "default",
    inter_threads: int = 1,
    source_prefix: str | None = None,
    source_suffix: str | None = None,
    target_prefix: str | None = None,
    tokenizer_files: Sequence[str | Path] = (),
    **_: object,
) -> ForeignTranslator:
    """Loader for `nmt.translate.BACKENDS`."""
    return ForeignTranslator(
        resolve(path, tokenizer_files or ()),
        device=device,
        threads=threads,
        compute_type=compute_type,
        inter_threads=inter_threads,
        source_prefix=source_prefix,
        source_suffix=source_suffix,
        target_prefix=target_prefix,
    )
