"""Argos Translate packages as models: an installed package folder (`metadata.json`, a
CTranslate2 model in `model/`, `sentencepiece.model`) or a `.argosmodel` archive, unpacked
once into the cache (`cache_dir() / "argos" / <sha256 of the archive>`) and reused.

An archive is data from elsewhere, so unpacking refuses what could write outside its
folder or fill the disk: absolute member names, `..`, symbolic links and other special
entries, more than `MAX_MEMBERS` members or `MAX_UNPACKED_BYTES` unpacked (counted as the
bytes are written, not as the archive claims). The folder is built aside and published by
one rename, so a reader never sees half a package. Files are looked at, nothing is run:
Argos's own code is not imported.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from nmt.config import ConfigError
from nmt.fileio import file_sha256

SUFFIX = ".argosmodel"
METADATA = "metadata.json"
MODEL_DIR = "model"
TOKENIZER = "sentencepiece.model"  # what Argos 1.x loads for a CTranslate2 package
MAX_UNPACKED_BYTES = 8 * 2**30  # the largest Argos packages are a few hundred MB
MAX_MEMBERS = 10_000
CACHE_ENV = "NMT_CACHE"


def cache_dir() -> Path:
    """Where unpacked packages and converted models are kept: `$NMT_CACHE`, else
    `$XDG_CACHE_HOME/nmt`, else `~/.cache/nmt`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nmt"


def is_argos_archive(path: Path) -> bool:
    """A `.argosmodel` file (a zip archive)."""
    return path.suffix == SUFFIX and path.is_file() and zipfile.is_zipfile(path)


def is_argos_folder(path: Path) -> bool:
    """An unpacked package: `metadata.json` and a CTranslate2 model in `model/`."""
    return (path / METADATA).is_file() and (path / MODEL_DIR / "model.bin").is_file()


def is_argos_package(path: Path) -> bool:
    return is_argos_archive(path) or is_argos_folder(path)


def package_folder(path: str | Path) -> Path:
    """The package folder of `path`: the folder itself, or the archive unpacked (once)
    into the cache; ConfigError naming the file if it is not a package."""
    path = Path(path)
    if is_argos_folder(path):
        return path
    if not is_argos_archive(path):
        raise ConfigError(f"{path}: not an Argos package ({SUFFIX} file or folder with {METADATA})")
    target = cache_dir() / "argos" / file_sha256(path)
    if not is_argos_folder(_top(target)):
        _unpack(path, target)
    return _top(target)


def _top(folder: Path) -> Path:
    """The package inside an unpacked archive: its one top-level folder (or itself)."""
    if not folder.is_dir():
        return folder
    entries = [p for p in folder.iterdir() if p.is_dir()]
    return entries[0] if len(entries) == 1 and not (folder / METADATA).exists() else folder


def _unpack(archive: Path, target: Path) -> None:
    """Unpack `archive` into `target`, safely (see the module's docstring) and atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name[:16]}-", dir=target.parent))
    try:
        staged = work / "package"
        staged.mkdir()
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            if len(members) > MAX_MEMBERS:
                raise ConfigError(f"{archive}: {len(members)} entries, more than {MAX_MEMBERS}")
            budget = MAX_UNPACKED_BYTES
            for m in members:
                budget = _extract(z, m, staged, archive, budget)
        if not is_argos_folder(_top(staged)):
            raise ConfigError(
                f"{archive}: holds no Argos package ({METADATA} and {MODEL_DIR}/model.bin)"
            )
        try:
            staged.rename(target)
        except OSError:  # another process published it meanwhile: use theirs
            if not is_argos_folder(_top(target)):
                raise
    except zipfile.BadZipFile as e:
        raise ConfigError(f"{archive}: not a readable zip archive ({e})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extract(
    z: zipfile.ZipFile, member: zipfile.ZipInfo, root: Path, archive: Path, budget: int
) -> int:
    """Write one member under `root`, refusing anything unsafe; the bytes left in `budget`."""
    name = PurePosixPath(member.filename)
    kind = stat.S_IFMT(member.external_attr >> 16)  # 0: a zip tool that records none
    if name.is_absolute() or ".." in name.parts or "\\" in member.filename or not name.parts:
        raise ConfigError(f"{archive}: unsafe entry name {member.filename!r}")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ConfigError(f"{archive}: {member.filename!r} is a link or special file")
    dest = root.joinpath(*name.parts)
    if member.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        return budget
    dest.parent.mkdir(parents=True, exist_ok=True)
    with z.open(member) as src, open(dest, "xb") as out:
        while chunk := src.read(1 << 20):
            budget -= len(chunk)
            if budget < 0:
                raise ConfigError(
                    f"{archive}: unpacks to more than {MAX_UNPACKED_BYTES / 2**30:.0f} GiB"
                )
            out.write(chunk)
    return budget


def read_metadata(folder: Path) -> dict[str, Any]:
    """The package's `metadata.json`; ConfigError naming it if it is not a JSON object."""
    return read_json_object(folder / METADATA)


def read_json_object(file: Path, what: str = "") -> dict[str, Any]:
    """The JSON object in `file`; a one-line ConfigError naming it (and `what` it holds)
    if it cannot be read or is not an object."""
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{file}: cannot read {what}({e})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{file}: not a JSON object")
    return value
