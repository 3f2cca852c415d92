import pytest

from nmt.data.corpus import CorpusError, read_lines, read_parallel


def test_mismatched_line_counts_name_both_files(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n")
    (tmp_path / "a.de").write_text("eins\nzwei\n")
    with pytest.raises(CorpusError, match=r"a\.en has 3 lines but .*a\.de has 2"):
        read_parallel(tmp_path / "a.en", tmp_path / "a.de")


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.en"
    path.write_bytes(b"fine\nalso fine\nbroken \xff here\n")
    with pytest.raises(CorpusError, match=r"bad\.en:3: invalid UTF-8"):
        read_lines(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(CorpusError, match="file not found"):
        read_lines(tmp_path / "nope.en")
    (tmp_path / "e.en").write_text("")
    (tmp_path / "e.de").write_text("")
    with pytest.raises(CorpusError, match="empty corpus"):
        read_parallel(tmp_path / "e.en", tmp_path / "e.de")


def test_crlf_and_control_characters_are_cleaned(tmp_path):
    path = tmp_path / "x.en"
    path.write_bytes(b"a\r\nb\x00c\r\n")
    assert read_lines(path) == ["a", "b c"]
