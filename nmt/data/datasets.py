"""Registered corpora: where each file comes from, its checksum, and where it is found locally.

Lookup order for a dataset's files: an explicit `data_dir` (``--data-dir``), then
``$NMT_DATA_DIR``, then the download cache (``$NMT_CACHE_DIR`` or ``~/.cache/nmt``), where
missing files are downloaded. A folder is searched both as ``DIR/NAME/FILE`` and ``DIR/FILE``.
Checksums are SHA-256 of the decompressed text, verified after every download.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nmt.config import DataConfig
from nmt.fileio import atomic_write_bytes

log = logging.getLogger(__name__)


class DatasetError(RuntimeError):
    """A dataset is unknown, cannot be found or downloaded, or fails its checksum."""


@dataclass(frozen=True)
class RemoteFile:
    name: str  # local file name, e.g. "train.en"
    url: str  # "" when the file has no public download of its own
    sha256: str
    gzip: bool = False


@dataclass(frozen=True)
class Dataset:
    name: str
    files: tuple[RemoteFile, ...]
    note: str = ""

    def file(self, name: str) -> RemoteFile:
        for f in self.files:
            if f.name == name:
                return f
        raise DatasetError(
            f"dataset {self.name!r} has no file {name!r} "
            f"(it has: {', '.join(f.name for f in self.files)})"
        )


_M30K = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{}.gz"
_OPUS = "https://raw.githubusercontent.com/Helsinki-NLP/OPUS-MT-testsets/master/testsets/{}"

DATASETS: dict[str, Dataset] = {
    "multi30k": Dataset(
        "multi30k",
        (
            RemoteFile(
                "train.en",
                _M30K.format("train.en"),
                "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
                True,
            ),
            RemoteFile(
                "train.de",
                _M30K.format("train.de"),
                "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
                True,
            ),
            RemoteFile(
                "val.en",
                _M30K.format("val.en"),
                "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
                True,
            ),
            RemoteFile(
                "val.de",
                _M30K.format("val.de"),
                "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
                True,
            ),
            RemoteFile(
                "test_2016_flickr.en",
                _M30K.format("test_2016_flickr.en"),
                "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
                True,
            ),
            RemoteFile(
                "test_2016_flickr.de",
                _M30K.format("test_2016_flickr.de"),
                "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
                True,
            ),
        ),
        note="Multi30k task 1 (Elliott et al. 2016); research and educational use.",
    ),
    "tatoeba": Dataset(
        "tatoeba",
        (
            RemoteFile(
                "train.en", "", "9d23bb87b2784b0dc6b1e462e53a618262120c02e1547ab40045016c1c674627"
            ),
            RemoteFile(
                "train.de", "", "ea3447c392df67a1ccc6e1062026459c52b60cd6905fb95193fb17bb7d8a8271"
            ),
            RemoteFile(
                "dev.en", "", "278e6737b099c3df072c5546886a47fce97610a3a218143d60da2c4902de9d4b"
            ),
            RemoteFile(
                "dev.de", "", "e09fd59274f57e2f4ac9176caf9934238f196bbe21091329e9b29be09e1731dd"
            ),
            RemoteFile(
                "test.en",
                _OPUS.format("deu-eng/tatoeba-test-v2021-08-07.eng"),
                "5d0e3169914a5e3f4ca7bdec670880f2025385c5a7e29547d9cbd7992105e77f",
            ),
            RemoteFile(
                "test.de",
                _OPUS.format("deu-eng/tatoeba-test-v2021-08-07.deu"),
                "a06d3300c05158e83bb5c1709a0bf5aecc2e28c895e66f03b1c914a7fdd8c8c6",
            ),
        ),
        note="manythings.org/anki deu-eng export (CC BY 2.0) with test pairs and a dev split "
        "removed; train/dev are derived files, so pass a folder that holds them.",
    ),
    "newstest2014": Dataset(
        "wmt",
        (
            RemoteFile(
                "newstest2014.en",
                _OPUS.format("eng-deu/newstest2014.eng"),
                "7294bccf2879a97b3706b95c9595f1459617a8ee7130d5d8581c910e69736971",
            ),
            RemoteFile(
                "newstest2014.de",
                _OPUS.format("eng-deu/newstest2014.deu"),
                "ae5d110486bc33d7175e9e28c7d0051eb3e5fcd2166dd93371089852c091a20e",
            ),
        ),
        note="WMT14 news test set (full); research use.",
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("NMT_CACHE_DIR") or Path.home() / ".cache" / "nmt")


def _candidates(dataset: Dataset, name: str, data_dir: str | Path | None) -> list[Path]:
    roots = [Path(d) for d in (data_dir, os.environ.get("NMT_DATA_DIR")) if d]
    out = []
    for root in roots:
        out += [root / dataset.name / name, root / name]
    return out


def get_file(
    dataset_name: str, name: str, data_dir: str | Path | None = None, download: bool = True
) -> Path:
    """Local path of file `name` of a registered dataset, downloading it if needed."""
    if dataset_name not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset_name!r} (known: {', '.join(DATASETS)})")
    dataset = DATASETS[dataset_name]
    remote = dataset.file(name)
    for path in _candidates(dataset, name, data_dir):
        if path.is_file():
            return path
    cached = cache_dir() / dataset.name / name
    if cached.is_file():
        return cached
    if not download or not remote.url:
        searched = [str(p) for p in _candidates(dataset, name, data_dir)] + [str(cached)]
        why = "downloads are disabled" if remote.url else dataset.note
        raise DatasetError(
            f"{dataset_name}/{name} not found (searched: {', '.join(searched)}); {why}"
        )
    download_file(remote, cached)
    return cached


def download_file(remote: RemoteFile, dest: Path, timeout: float = 60.0) -> None:
    """Fetch `remote` into `dest` atomically, after checking its SHA-256."""
    log.info("downloading %s -> %s", remote.url, dest)
    try:
        with urllib.request.urlopen(remote.url, timeout=timeout) as response:
            data = response.read()
    except OSError as e:
        raise DatasetError(f"download of {remote.url} failed: {e}") from None
    if remote.gzip:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DatasetError(f"{remote.url}: not a valid gzip file: {e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != remote.sha256:
        raise DatasetError(
            f"{remote.url}: checksum mismatch for {remote.name}: got sha256 "
            f"{digest}, expected {remote.sha256}; nothing was written"
        )
    atomic_write_bytes(dest, data)


def split_files(
    dataset_name: str, split: str, src_lang: str, tgt_lang: str, data_dir: str | Path | None = None
) -> tuple[Path, Path]:
    """Source and target paths of one split (``train``, ``val``, ...) of a dataset."""
    return (
        get_file(dataset_name, f"{split}.{src_lang}", data_dir),
        get_file(dataset_name, f"{split}.{tgt_lang}", data_dir),
    )


def split_paths(data: DataConfig, split: str) -> tuple[Path, Path]:
    """The source and target files of `split` of a run's data section: from the dataset
    registry (`data.dataset`), or `split` as a file prefix (in `data.data_dir` if set)."""
    if data.dataset:
        return split_files(data.dataset, split, data.src_lang, data.tgt_lang, data.data_dir or None)
    prefix = Path(data.data_dir) / split if data.data_dir else Path(split)
    return Path(f"{prefix}.{data.src_lang}"), Path(f"{prefix}.{data.tgt_lang}")
