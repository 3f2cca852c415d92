"""Argos Translate packages (`.argosmodel`) of nmt models, for Argos Translate 1.11 and
LibreTranslate, that translate with the network off.

A package is a zip archive holding one folder (argostranslate/package.py, `IPackage`):

    nmt-translate-en_de-1_0/
        metadata.json        what Argos reads: languages, versions, type "translate"
        model/               the CTranslate2 export (int8), as nmt wrote it: nmt-translate
                             loads it too; with its vocabulary map if it has one
        sentencepiece.model  the tokenizer Argos runs (the export's spm.model)
        minisbd/*.onnx       the sentence splitter Argos runs (see below)
        README.md            the model card (nmt.export.argos_card): data, shape, scores,
                             licence
        nmt_argos.json       provenance: source model, tokenizer sha256, nmt version

Offline: Argos 1.11 splits every paragraph into sentences with MiniSBD, which loads the
first `*.onnx` file of the package's `minisbd/` folder (argostranslate/package.py:201-206,
sbd.py:95-105, minisbd/models.py `get_model_file`: a file path is used as it is) and
otherwise downloads a model from GitHub at first use. nmt ships a rule-based splitter in
MiniSBD's format (`nmt.export.sbd`), or the MiniSBD model given as `sbd_model`.

The input is a checkpoint (exported to CTranslate2 first, in a temporary folder) or an nmt
CTranslate2 export folder, packaged as it is. The output file follows the rules of
`nmt.outputs`: built beside the target, published by one link (no `force`: fails if the
target exists, also when another process made it meanwhile) or rename (`force`); an
existing file is replaced only with `force` and only if nmt-export made it (its marker
beside it, with the sha256 it wrote), never an input nor anything else.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nmt import __version__
from nmt.export.argos_card import model_card, source_card, source_scores, training_data
from nmt.export.folder import (
    EXPORT_INFO,
    TOKENIZER_FILE,
    ExportError,
    is_ct2_export,
    write_json,
)
from nmt.fileio import file_sha256
from nmt.outputs import claim

log = logging.getLogger(__name__)

FORMAT = "nmt-argos"
FORMAT_VERSION = 1
PROVENANCE_FILE = "nmt_argos.json"
SUFFIX = ".argosmodel"
ARGOS_VERSION = "1.11"  # the Argos Translate release these packages are made and tested for
SBD_DIR = "minisbd"
RULES_FILE = "nmt-rules.onnx"
ARGOS_TOKENIZER = "sentencepiece.model"

# How Argos 1.11 decodes (argostranslate/translate.py, `apply_packaged_translation`, lines
# 504-513, and settings.py:170-174): `translate_batch(tokens, replace_unknowns=True,
# max_batch_size=32, batch_type="tokens", beam_size=max(num_hypotheses, 4),
# num_hypotheses=1, length_penalty=0.2, return_scores=True)`, on a Translator with
# compute_type "auto"; no max_decoding_length, so CTranslate2's default of 256 tokens.
ARGOS_DECODING: dict[str, Any] = {
    "beam_size": 4,
    "length_penalty": 0.2,
    "max_decoding_length": 256,
    "max_batch_size": 32,
    "batch_type": "tokens",
    "replace_unknowns": True,
    "compute_type": "auto",
    "use_vmap": False,
}

# ARGOS_DECODING as `nmt.translate` options (CT2Translator.translate): the same beam, length
# penalty, batches and length limit (0 x source + 256, capped by the position table).
NMT_DECODING: dict[str, Any] = {
    "beam_size": 4,
    "length_penalty": 0.2,
    "max_len_a": 0.0,
    "max_len_b": 256,
    "max_batch_tokens": 32,
    "use_vmap": False,
}

LANGUAGE_NAMES = {
    "ar": "Arabic",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "et": "Estonian",
    "fi": "Finnish",
    "fr": "French",
    "hi": "Hindi",
    "hu": "Hungarian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "lt": "Lithuanian",
    "lv": "Latvian",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sv": "Swedish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "zh": "Chinese",
}

_CODE = re.compile(r"^[a-z]{2,3}$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.]*$")


def export_argos(
    source: dict[str, Any] | str | Path,
    out_path: str | Path,
    quantization: str | None = None,
    vmap: str | Path | None = None,
    force: bool = False,
    checkpoint_path: str | Path | None = None,
    from_code: str | None = None,
    to_code: str | None = None,
    version: str = "1.0",
    sbd_model: str | Path | None = None,
) -> Path:
    """Write the Argos Translate package `out_path` (`.argosmodel`) of `source`: a checkpoint
    (the state `load_checkpoint` returns, `checkpoint_path` its file) exported to CTranslate2
    `quantization` (default int8, `vmap` shipped), or the path of an nmt CTranslate2 export
    folder, packaged as it is. `from_code`/`to_code` default to the checkpoint's languages;
    `version` is the package version; `sbd_model` a MiniSBD `.onnx` model to bundle instead
    of nmt's rule-based splitter."""
    out = Path(out_path)
    export_dir, state = _source(source, quantization, vmap)
    from_code, to_code = _languages(state, export_dir, from_code, to_code)
    _check_names(out, version, sbd_model)
    inputs = (checkpoint_path, export_dir, vmap, sbd_model)
    output = claim(out, "nmt-export", inputs=inputs, force=force, folder=False)

    top = f"nmt-translate-{from_code}_{to_code}-{version.replace('.', '_')}"
    with output.workspace() as workdir:
        root = workdir / top
        root.mkdir()
        model_dir = root / "model"
        if export_dir is not None:
            _copy_export(export_dir, model_dir)
        else:
            from nmt.export.ct2 import export_ct2

            q = quantization or "int8"
            export_ct2(state, model_dir, quantization=q, vmap=vmap, checkpoint_path=checkpoint_path)
        info = json.loads((model_dir / EXPORT_INFO).read_text(encoding="utf-8"))
        tokenizer_sha256 = _check_tokenizer(model_dir, info)
        shutil.copyfile(model_dir / TOKENIZER_FILE, root / ARGOS_TOKENIZER)
        metadata = package_metadata(from_code, to_code, version)
        write_json(root / "metadata.json", metadata)
        provenance = {
            **_provenance(state, export_dir, checkpoint_path, info, model_dir),
            "tokenizer": {"file": ARGOS_TOKENIZER, "sha256": tokenizer_sha256},
            "sentence_splitter": _write_splitter(root / SBD_DIR, from_code, sbd_model),
            "argos_decoding": ARGOS_DECODING,
            "metadata": metadata,
        }
        write_json(root / PROVENANCE_FILE, provenance)
        scores = source_scores(export_dir, checkpoint_path)
        (root / "README.md").write_text(
            model_card(provenance, info, scores, PROVENANCE_FILE), encoding="utf-8"
        )
        archive = workdir / "package.zip"
        _zip_folder(root, archive)
        output.publish_file(archive)
    log.info("wrote Argos Translate package %s -> %s (%s)", from_code, to_code, out)
    return out


def _source(
    source: dict[str, Any] | str | Path, quantization: str | None, vmap: str | Path | None
) -> tuple[Path | None, dict[str, Any] | None]:
    """(the CTranslate2 export folder, the checkpoint state): one of them is None."""
    export_dir = _export_folder(source)
    if export_dir is not None:
        from nmt.export.ct2 import read_export_info

        exported = read_export_info(export_dir)["quantization"]  # ExportError if not nmt's
        if vmap is not None or quantization not in (None, exported):
            raise ExportError(
                f"{export_dir}: a CTranslate2 export ({exported}) is packaged as it is: "
                "--quantization and --vmap apply to checkpoints"
            )
    state = source if isinstance(source, dict) else None
    if state is None and export_dir is None:
        raise ExportError(f"{source}: not a checkpoint nor an nmt CTranslate2 export folder")
    return export_dir, state


def _check_names(out: Path, version: str, sbd_model: str | Path | None) -> None:
    if not _VERSION.match(version or ""):
        raise ExportError(f"package version {version!r}: use digits, letters and dots (1.0)")
    if out.suffix != SUFFIX:
        raise ExportError(f"{out}: an Argos package's name ends in {SUFFIX}")
    if sbd_model is not None and not (
        Path(sbd_model).is_file() and str(sbd_model).endswith(".onnx")
    ):
        raise ExportError(f"{sbd_model}: not a MiniSBD model file (.onnx)")


def _provenance(
    state: dict[str, Any] | None,
    export_dir: Path | None,
    checkpoint_path: str | Path | None,
    info: dict[str, Any],
    model_dir: Path,
) -> dict[str, Any]:
    """`PROVENANCE_FILE`'s record of the package's source, format and training data."""
    source_path = export_dir or checkpoint_path
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nmt_version": __version__,
        "argos_version": ARGOS_VERSION,
        "source": None if source_path is None else str(source_path),
        "source_kind": "ctranslate2-export" if export_dir is not None else "checkpoint",
        "model_export_info": f"model/{EXPORT_INFO}",
        "quantization": info.get("quantization"),
        "vocabulary_map": (model_dir / "vmap.txt").is_file(),
        "training_data": training_data(state, source_card(export_dir)),
    }


def package_metadata(from_code: str, to_code: str, version: str) -> dict[str, Any]:
    """metadata.json: the fields Argos 1.11 reads (package.py, `load_metadata_from_json`)."""
    return {
        "package_version": version,
        "argos_version": ARGOS_VERSION,
        "from_code": from_code,
        "from_name": LANGUAGE_NAMES.get(from_code, from_code),
        "to_code": to_code,
        "to_name": LANGUAGE_NAMES.get(to_code, to_code),
        "type": "translate",
        "links": [],
        "dependencies": [],
    }


def is_nmt_package(path: str | Path) -> bool:
    """True for an `.argosmodel` file that nmt made: a zip of one folder holding
    `nmt_argos.json` of this format (judged by its content, not its name)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            tops = {name.split("/", 1)[0] for name in z.namelist()}
            if len(tops) != 1:
                return False
            info = json.loads(z.read(f"{tops.pop()}/{PROVENANCE_FILE}"))
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return False
    return isinstance(info, dict) and info.get("format") == FORMAT


def read_package_info(path: str | Path) -> dict[str, Any]:
    """The `nmt_argos.json` of a package nmt made; ExportError if it is not one."""
    if not is_nmt_package(path):
        raise ExportError(f"{path}: not an Argos package made by nmt (no {PROVENANCE_FILE})")
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(f"/{PROVENANCE_FILE}"))
        return json.loads(z.read(name))


def _export_folder(source: dict[str, Any] | str | Path) -> Path | None:
    if isinstance(source, dict):
        return None
    path = Path(source)
    return path if is_ct2_export(path) else None


def _languages(
    state: dict[str, Any] | None,
    export_dir: Path | None,
    from_code: str | None,
    to_code: str | None,
) -> tuple[str, str]:
    if state is not None:
        data = (state.get("run_config") or {}).get("data") or {}
        from_code = from_code or data.get("src_lang")
        to_code = to_code or data.get("tgt_lang")
    if not from_code or not to_code:
        raise ExportError(
            f"{export_dir or 'the checkpoint'}: records no languages: give --from and --to"
        )
    for code in (from_code, to_code):
        if not _CODE.match(code):
            raise ExportError(f"language code {code!r}: use an ISO 639 code such as en or de")
    if from_code == to_code:
        raise ExportError(f"--from and --to are both {from_code!r}")
    for code in (from_code, to_code):
        if code not in LANGUAGE_NAMES:
            log.warning("language code %r: no name known, Argos will show the code", code)
    return from_code, to_code


def _copy_export(export_dir: Path, model_dir: Path) -> None:
    """The export's own files (not its model card, which the package's README replaces)."""
    model_dir.mkdir()
    for item in sorted(export_dir.iterdir()):
        if item.name == "README.md":
            continue
        if item.is_symlink() or not item.is_file():
            raise ExportError(f"{item}: not a plain file; an export folder holds only files")
        shutil.copyfile(item, model_dir / item.name)


def _check_tokenizer(model_dir: Path, info: dict[str, Any]) -> str:
    sha = file_sha256(model_dir / TOKENIZER_FILE)
    expected = info.get("tokenizer", {}).get("sha256")
    if sha != expected:
        raise ExportError(
            f"{model_dir / TOKENIZER_FILE}: sha256 {sha[:12]} does not match the "
            f"{str(expected)[:12]} of {EXPORT_INFO}"
        )
    return sha


def _write_splitter(folder: Path, from_code: str, sbd_model: str | Path | None) -> dict[str, Any]:
    folder.mkdir()
    if sbd_model is not None:
        target = folder / Path(sbd_model).name
        shutil.copyfile(sbd_model, target)
        description = "a MiniSBD model given when packaging (`sbd_model`)."
        kind = "minisbd-model"
    else:
        from nmt.export.sbd import VERSION, write_model

        target = write_model(folder / RULES_FILE, from_code)
        description = (
            f"nmt's rule-based splitter in MiniSBD's format (rules version {VERSION}): a "
            "sentence ends after `.`, `!`, `?` or `...` (or one followed by a closing quote "
            "or bracket) when the next word does not start in lower case; abbreviations "
            'before a capital ("Mr. Smith") are split.'
        )
        kind = "nmt-rules"
    return {
        "file": f"{SBD_DIR}/{target.name}",
        "kind": kind,
        "sha256": file_sha256(target),
        "description": description,
        "source": None if sbd_model is None else str(sbd_model),
    }


def _zip_folder(root: Path, archive: Path) -> None:
    """Zip `root` as the archive's one top-level folder, files in a fixed order, fsynced."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(root.parent).as_posix())
    with open(archive, "rb+") as f:
        os.fsync(f.fileno())
