"""Tests for ledger.files: one bounded whole-file read."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import DecodeError
from ledger.files import FileTooLargeError, read_bounded


def test_read_bounded(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 10)
    assert read_bounded(f, 10) == b"x" * 10
    with pytest.raises(FileTooLargeError, match="larger than 9 bytes") as info:
        read_bounded(f, 9)
    assert isinstance(info.value, DecodeError) and info.value.limit == 9 and info.value.path == f
    with pytest.raises(OSError):
        read_bounded(tmp_path / "missing", 10)
    with pytest.raises(OSError):
        read_bounded(tmp_path, 10)  # a directory
