"""Evidence rows: refused signed objects are kept as received (spec 7.1.8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.evidencecheck import note_key
from ledger.storage import Storage


def test_evidence_is_kept_in_order_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Storage.open(path) as s:
        s.put_evidence("VN", "root-mismatch", b"note one\n", "size 3: root differs", 100)
        s.put_evidence("TH", "bad-consistency-proof", b"note two\n", "proof too short", 101)
        s.put_evidence("VN", "root-mismatch", b"note three\n", "size 4: root differs", 102)
    with Storage.open(path) as s:
        assert [e.data for e in s.evidence()] == [b"note one\n", b"note two\n", b"note three\n"]
        vn = s.evidence("VN")
        assert [(e.kind, e.received, e.reason) for e in vn] == [
            ("root-mismatch", 100, "size 3: root differs"), ("root-mismatch", 102, "size 4: root differs")]
        assert s.evidence("LA") == []


def test_the_same_object_is_kept_once_per_kind(tmp_path: Path) -> None:
    with Storage.open(tmp_path / "ledger.sqlite3") as s:
        assert s.put_evidence("VN", "rule-breach", b"note\n", "size 3: entry 2 breaks 6.3.6", 100)
        assert not s.put_evidence("VN", "rule-breach", b"note\n", "size 3: entry 2 breaks 6.3.6", 101)
        assert s.put_evidence("VN", "root-mismatch", b"note\n", "size 3: root differs", 102)  # another kind
        assert s.put_evidence("TH", "rule-breach", b"note\n", "size 3", 103)  # another log
        assert [(e.log, e.kind, e.received) for e in s.evidence()] == [
            ("VN", "rule-breach", 100), ("VN", "root-mismatch", 102), ("TH", "rule-breach", 103)]


def test_a_note_with_other_signature_lines_is_the_same_evidence(tmp_path: Path) -> None:
    note = b"origin\n7\nroot\n\n-- VN sig1\n"
    padded = note + b"-- x junk\n"
    with Storage.open(tmp_path / "ledger.sqlite3") as s:
        assert s.put_evidence("VN", "rule-breach", note, "size 7", 100, note_key(note))
        assert not s.put_evidence("VN", "rule-breach", padded, "size 7", 101, note_key(padded))
        other = b"origin\n8\nroot\n\n-- VN sig2\n"
        assert s.put_evidence("VN", "rule-breach", other, "size 8", 102, note_key(other))
        assert [e.data for e in s.evidence()] == [note, other]
        with pytest.raises(ValueError):
            s.put_evidence("VN", "rule-breach", note, "size 7", 103, b"another")
