"""The auditors' export: a replayed ledger as plain relational tables, for Datasette or any SQL tool (no commands).

``mekong audit export`` replays a database from the pinned genesis first and exports only a database that
replays cleanly. The tables (described in specs/07-storage.md section 7.7) are written with ``sqlite-utils``,
with primary keys, foreign keys and indexes: one row per registry fact, each naming the entry (log and
index) it comes from, so every row can be traced back to a signed, final entry. Byte strings are
lower-case hex, lists are JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from ledger.bodies import (
    CredentialAnchor,
    CredentialStatus,
    GovernanceAdopt,
    IssuerKeyAdd,
    IssuerKeyRevoke,
    IssuerKeyRotate,
    IssuerRegister,
    IssuerUpdate,
    MemberPolicy,
)
from ledger.checkpoint import Checkpoint, Cosignature
from ledger.entries import UnverifiedEntry
from ledger.errors import DecodeError
from ledger.finality import root_reference, state_reference
from ledger.governance import GovernanceChain
from ledger.keys import key_id
from ledger.note import Note, NoteSignature
from ledger.storage import Storage

__all__ = ["COLUMNS", "TABLES", "export_ledger"]

#: Table -> (primary key, foreign keys as (column, other table, other column)); the order they are written in.
TABLES: dict[str, tuple[str | tuple[str, ...], tuple[tuple[str, str, str], ...]]] = {
    "members": ("id", ()),
    "issuers": ("issuer", (("member", "members", "id"),)),
    "issuer_events": (("log", "idx"), (("issuer", "issuers", "issuer"),)),
    "keys": ("kid", (("issuer", "issuers", "issuer"),)),
    "key_events": (("log", "idx", "kid"), (("kid", "keys", "kid"),)),
    "credentials": ("id", (("issuer", "issuers", "issuer"),)),
    "credential_events": (("log", "idx"), (("credential", "credentials", "id"),)),
    "anchors": (("log", "idx"), (("issuer", "issuers", "issuer"),)),
    "policies": (("log", "idx"), (("member", "members", "id"),)),
    "policy_rules": (("log", "idx", "rule"), ()),
    "adoptions": (("log", "idx"), ()),
    "checkpoints": (("log", "size"), ()),
    "cosignatures": (("log", "size", "witness"), ()),
    "finals": (("log", "size"), ()),
    "evidence": ("id", ()),
}
_AT = {"log": str, "idx": int, "time": int}
#: Table -> column -> type: every table exists in an export, empty or not.
COLUMNS: dict[str, dict[str, type]] = {
    "members": {"id": str, "name": str},
    "issuers": {"issuer": str, "member": str, "name": str, "jurisdiction": str, "registered_log": str,
                "registered_idx": int},
    "issuer_events": {**_AT, "issuer": str, "event": str, "status": str, "loa": str, "document_types": str,
                      "reason": str},
    "keys": {"kid": str, "issuer": str, "public_key": str, "valid_from": int, "valid_until": int, "added_log": str,
             "added_idx": int},
    "key_events": {**_AT, "kid": str, "event": str, "reason": str, "effective": int},
    "credentials": {"id": str, "issuer": str, "credential_id": str},
    "credential_events": {**_AT, "credential": str, "status": str, "reason": str},
    "anchors": {**_AT, "issuer": str, "digest": str, "hash_alg": str, "credential_id": str},
    "policies": {**_AT, "member": str},
    "policy_rules": {"log": str, "idx": int, "rule": int, "member": str, "document_types": str, "min_loa": str},
    "adoptions": {**_AT, "version": int, "root_hash": str},
    "checkpoints": {"log": str, "size": int, "root_hash": str, "state_root": str, "governance_version": int,
                    "governance_root": str, "note": str},
    "cosignatures": {"log": str, "size": int, "witness": str, "timestamp": int, "line": str},
    "finals": {"log": str, "size": int, "root_version": int, "witnessed_time": int},
    "evidence": {"id": int, "log": str, "kind": str, "received": int, "reason": str, "data": bytes},
}
_INDEXES = (("anchors", ("digest",)), ("anchors", ("credential_id",)), ("credential_events", ("credential",)),
            ("key_events", ("kid",)), ("issuer_events", ("issuer",)), ("keys", ("issuer",)))


def _rows(storage: Storage, log: str) -> Iterator[tuple[str, dict[str, Any]]]:
    # (table, row) for every entry of a log, in index order.
    for idx, raw, _ in storage.iter_entries(log):
        e = UnverifiedEntry.decode(raw)
        b, at = e.body, {"log": log, "idx": idx, "time": e.time}
        if isinstance(b, IssuerRegister):
            yield "issuers", {"issuer": b.issuer, "member": log, "name": b.name, "jurisdiction": b.jurisdiction,
                              "registered_log": log, "registered_idx": idx}
            yield "issuer_events", {**at, "issuer": b.issuer, "event": "register", "status": "active", "loa": b.loa,
                                    "document_types": json.dumps(list(b.document_types)), "reason": ""}
        elif isinstance(b, IssuerUpdate):
            types = None if b.document_types is None else json.dumps(list(b.document_types))
            yield "issuer_events", {**at, "issuer": b.issuer, "event": "update", "status": b.status, "loa": b.loa,
                                    "document_types": types, "reason": b.reason}
        elif isinstance(b, IssuerKeyAdd | IssuerKeyRotate):
            kid = key_id(b.key)
            valid_from = b.valid_from if isinstance(b, IssuerKeyAdd) else e.time
            yield "keys", {"kid": kid.hex(), "issuer": b.issuer, "public_key": b.key.hex(), "valid_from": valid_from,
                           "valid_until": b.valid_until, "added_log": log, "added_idx": idx}
            yield "key_events", {**at, "kid": kid.hex(), "event": "added", "reason": "registered"
                                 if isinstance(b, IssuerKeyAdd) else "rotation", "effective": valid_from}
            if isinstance(b, IssuerKeyRotate):
                yield "key_events", {**at, "kid": b.old_kid.hex(), "event": "superseded", "reason": "rotation",
                                     "effective": e.time}
        elif isinstance(b, IssuerKeyRevoke):
            yield "key_events", {**at, "kid": b.kid.hex(), "event": "revoked", "reason": b.reason,
                                 "effective": b.effective}
        elif isinstance(b, CredentialAnchor):
            yield "anchors", {**at, "issuer": b.issuer, "digest": b.digest.hex(), "hash_alg": b.hash_alg,
                              "credential_id": None if b.credential_id is None else b.credential_id.hex()}
        elif isinstance(b, CredentialStatus):
            cid = f"{b.issuer} {b.credential_id.hex()}"
            yield "credentials", {"id": cid, "issuer": b.issuer, "credential_id": b.credential_id.hex()}
            yield "credential_events", {**at, "credential": cid, "status": b.status, "reason": b.reason}
        elif isinstance(b, MemberPolicy):
            yield "policies", {**at, "member": log}
            for n, r in enumerate(b.rules):
                yield "policy_rules", {"log": log, "idx": idx, "rule": n, "member": r.member,
                                       "document_types": json.dumps(list(r.document_types)), "min_loa": r.min_loa}
        elif isinstance(b, GovernanceAdopt):
            yield "adoptions", {**at, "version": b.version, "root_hash": b.root_hash.hex()}


def _checkpoint_rows(storage: Storage, log: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for size, data in storage.checkpoints(log):
        cp = Checkpoint.parse(Note.parse(data).text)
        version, root = root_reference(cp)
        yield "checkpoints", {"log": log, "size": size, "root_hash": cp.root_hash.hex(),
                              "state_root": state_reference(cp).hex(), "governance_version": version,
                              "governance_root": root.hex(), "note": Note.parse(data).text}
    for c in storage.cosignatures(log):
        try:
            ts: int | None = Cosignature.from_note_signature(NoteSignature.parse_line(c.line.decode())).timestamp
        except (DecodeError, UnicodeDecodeError):
            ts = None
        yield "cosignatures", {"log": log, "size": c.size, "witness": c.witness, "timestamp": ts,
                               "line": c.line.decode("utf-8", "replace")}
    for size, version, witnessed in storage.finals(log):
        yield "finals", {"log": log, "size": size, "root_version": version, "witnessed_time": witnessed}


def export_ledger(storage: Storage, chain: GovernanceChain, out: Path) -> dict[str, int]:
    """Write the export of a cleanly replayed database to ``out`` (a new SQLite file); table -> row count.

    Raises:
        FileExistsError: ``out`` exists (an export is never written over another file).
    """
    if out.exists():
        raise FileExistsError(f"{out} exists; an export is written to a new file")
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
    rows["members"] = [{"id": m, "name": next((r.member(m).name for r in reversed(chain.roots)
                                                if m in r.member_ids), m)} for m in chain.members_ever]
    for log in storage.logs():
        for table, row in (*_rows(storage, log), *_checkpoint_rows(storage, log)):
            rows[table].append(row)
    rows["evidence"] = [{"id": n, "log": e.log, "kind": e.kind, "received": e.received, "reason": e.reason,
                         "data": e.data} for n, e in enumerate(storage.evidence(), 1)]
    db = sqlite_utils.Database(str(out))
    try:
        db.execute("PRAGMA foreign_keys = ON")
        for table, (pk, fks) in TABLES.items():
            db[table].create(COLUMNS[table], pk=pk, foreign_keys=list(fks))  # type: ignore[union-attr]
            unique = {r[pk] if isinstance(pk, str) else tuple(r[c] for c in pk): r for r in rows[table]}
            db[table].insert_all(list(unique.values()))  # type: ignore[union-attr]
        for table, cols in _INDEXES:
            db[table].create_index(list(cols), if_not_exists=True)  # type: ignore[union-attr]
    finally:
        db.close()
    return {t: len({(r[p] if isinstance(p, str) else tuple(r[c] for c in p)) for r in rows[t]})
            for t, (p, _) in TABLES.items()}
