"""Reading user files: missing paths, folders, oversized and undecodable files are one InputError line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from headscope.errors import InputError
from headscope.files import read_bytes, read_json, read_text


def test_reads_within_the_limit(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text('{"x": [1, 2]}', encoding="utf-8")
    assert read_json(p, "job", limit=13) == {"x": [1, 2]}
    assert read_text(p, "job", limit=13) == '{"x": [1, 2]}'
    assert read_bytes(str(p), "job", limit=100) == b'{"x": [1, 2]}'


@pytest.mark.parametrize(
    ("make", "reader", "message"),
    [
        (lambda d: d / "missing.txt", read_text, "text file not found: "),
        (lambda d: d, read_text, "is a folder, not a file"),
        (lambda d: _write(d / "big.txt", b"x" * 11), read_text, "is larger than 10 bytes (11 bytes)"),
        (lambda d: _write(d / "latin.txt", b"caf\xe9"), read_text, "is not UTF-8 text"),
        (
            lambda d: _write(d / "bad.json", b'{"a": 1,\n}'),
            read_json,
            "is not valid JSON: Expecting property name enclosed in double quotes (line 2)",
        ),
    ],
)
def test_each_refusal_is_one_line_naming_the_file(tmp_path: Path, make, reader, message) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        reader(path, "text", limit=10)
    assert message in str(err.value) and "\n" not in str(err.value)


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def test_json_nested_beyond_the_parser_is_refused(tmp_path: Path) -> None:
    deep = _write(tmp_path / "deep.json", b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(InputError, match="nested too deeply"):
        read_json(deep, "job")
