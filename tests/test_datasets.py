"""The download path, against a loopback HTTP server (no network needed)."""

import gzip
import hashlib
import http.server
import threading
from functools import partial

import pytest

from nmt.data import datasets
from nmt.data.datasets import Dataset, DatasetError, RemoteFile, get_file


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def register(monkeypatch, url, sha256, gz=True):
    toy = Dataset("toy", (RemoteFile("train.en", url, sha256, gz),))
    monkeypatch.setitem(datasets.DATASETS, "toy", toy)


def test_download_decompresses_verifies_and_caches(server, tmp_path, monkeypatch):
    root, base = server
    text = b"a dog runs\na cat sleeps\n"
    (root / "train.en.gz").write_bytes(gzip.compress(text))
    register(monkeypatch, f"{base}/train.en.gz", hashlib.sha256(text).hexdigest())
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NMT_DATA_DIR", raising=False)
    path = get_file("toy", "train.en")
    assert path == tmp_path / "cache" / "toy" / "train.en"
    assert path.read_bytes() == text
    (root / "train.en.gz").unlink()  # second call: served from the cache
    assert get_file("toy", "train.en") == path


def test_bad_checksum_is_rejected_and_nothing_is_written(server, tmp_path, monkeypatch):
    root, base = server
    (root / "train.en.gz").write_bytes(gzip.compress(b"tampered\n"))
    register(monkeypatch, f"{base}/train.en.gz", "0" * 64)
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NMT_DATA_DIR", raising=False)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        get_file("toy", "train.en")
    assert not (tmp_path / "cache" / "toy" / "train.en").exists()


def test_http_error_is_a_clear_error(server, tmp_path, monkeypatch):
    _, base = server
    register(monkeypatch, f"{base}/missing.gz", "0" * 64)
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NMT_DATA_DIR", raising=False)
    with pytest.raises(DatasetError, match="download of .* failed"):
        get_file("toy", "train.en")


def test_local_data_dir_wins_and_unknown_names_fail(tmp_path):
    (tmp_path / "multi30k").mkdir()
    (tmp_path / "multi30k" / "val.en").write_text("x\n")
    assert get_file("multi30k", "val.en", tmp_path) == tmp_path / "multi30k" / "val.en"
    with pytest.raises(DatasetError, match="unknown dataset"):
        get_file("nope", "train.en")
    with pytest.raises(DatasetError, match="has no file"):
        get_file("multi30k", "train.fr")


def test_shared_multi30k_matches_registered_checksums(shared_data):
    from nmt.fileio import file_sha256

    for remote in datasets.DATASETS["multi30k"].files:
        assert file_sha256(get_file("multi30k", remote.name, shared_data)) == remote.sha256
