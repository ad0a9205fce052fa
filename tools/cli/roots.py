"""Signed governance root files for the ``mekong genesis`` and ``mekong governance`` commands (no commands here).

Reading a signed root file, describing a root for people and for ``--json``, merging the members'
signature files into one signed root, and signing a draft with an admin key file (spec 5.2).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ledger.cose import UnverifiedSign1
from ledger.errors import DecodeError, VerificationError
from ledger.keys import key_id, public_key_of
from ledger.roots import Root, SignedRoot, sign_root
from tools.cli.util import ToolError, emit, load_key, read_bytes, write_bytes

__all__ = ["describe_root", "load_signed_root", "merge_signed", "root_lines", "sign_command", "signers"]


def load_signed_root(path: str | Path, what: str = "signed root") -> SignedRoot:
    """Read and decode a signed root file (unverified).

    Raises:
        ToolError: unreadable or malformed.
    """
    data = read_bytes(path, what, 1 << 20)
    try:
        return SignedRoot.from_cbor(data)
    except DecodeError as e:
        raise ToolError(f"{path} is not a signed governance root: {e}") from None


def signers(signed: SignedRoot, *roots: Root) -> dict[str, list[str]]:
    """Who signed ``signed``, by key id, judged against the admin keys of ``roots``.

    Returns:
        ``{"valid": [member ids], "invalid": [key ids of bad signatures by listed keys], "unknown": [key ids]}``.
    """
    valid: set[str] = set()
    invalid: list[str] = []
    unknown: list[str] = []
    for raw in signed.signatures:
        sig = UnverifiedSign1.decode(raw)
        kid = sig.kid or b""
        found = [(r.admin_key_owner(kid), r.admin_key(kid)) for r in roots if r.admin_key(kid) is not None]
        if not found:
            unknown.append(kid.hex())
            continue
        owner, key = found[0]
        try:
            assert key is not None and owner is not None
            sig.verify(key, detached_payload=signed.payload)
            valid.add(owner)
        except (VerificationError, DecodeError):
            invalid.append(kid.hex())
    return {"valid": sorted(valid), "invalid": invalid, "unknown": unknown}


def describe_root(signed: SignedRoot, *roots: Root) -> dict[str, Any]:
    """The JSON description of a signed root: fields, members with key ids, and who signed it.

    ``roots`` are the roots whose admin keys count for the signatures (default: the root itself).
    """
    r = signed.root
    return {
        "network": r.network, "version": r.version, "hash": signed.root_hash.hex(),
        "previous": r.previous.hex() if r.previous else None, "quorum": r.quorum, "threshold": r.threshold,
        "faulty": r.faulty, "issued_at": r.issued_at, "expires": r.expires,
        "members": [{"id": m.id, "name": m.name,
                     "admin_keys": [{"public_key": k.hex(), "key_id": key_id(k).hex()} for k in m.admin_keys],
                     "node_key": {"public_key": m.node_key.hex(), "key_id": key_id(m.node_key).hex()},
                     "endpoints": list(m.endpoints)} for m in r.members],
        "signatures": signers(signed, *(roots or (r,))),
    }


def root_lines(doc: dict[str, Any]) -> list[str]:
    """Text lines for a :func:`describe_root` document."""
    lines = [f"network {doc['network']} root version {doc['version']}",
             f"  hash:      {doc['hash']}"]
    if doc["previous"]:
        lines.append(f"  previous:  {doc['previous']}")
    lines.append(f"  quorum {doc['quorum']}, threshold {doc['threshold']}, faulty {doc['faulty']}, "
                 f"issued at {doc['issued_at']}" + (f", expires {doc['expires']}" if doc["expires"] else ""))
    for m in doc["members"]:
        lines.append(f"  {m['id']}  {m['name']}")
        lines.append(f"      admin key ids: {', '.join(k['key_id'] for k in m['admin_keys'])}")
        lines.append(f"      node key id:   {m['node_key']['key_id']}")
        lines.append(f"      endpoints:     {', '.join(m['endpoints'])}")
    sig = doc["signatures"]
    lines.append(f"  signed by: {', '.join(sig['valid']) or 'nobody yet'}")
    if sig["invalid"]:
        lines.append(f"  BAD signatures by key ids: {', '.join(sig['invalid'])}")
    if sig["unknown"]:
        lines.append(f"  signatures by keys this root does not list: {', '.join(sig['unknown'])}")
    return lines


def merge_signed(base: SignedRoot, paths: Iterable[str | Path]) -> SignedRoot:
    """``base`` with the signatures of every signed root file in ``paths`` added.

    Raises:
        ToolError: a file cannot be read, or signs a different root (the message names the file).
    """
    merged = base
    for p in paths:
        other = load_signed_root(p)
        if other.payload != base.payload:
            raise ToolError(f"{p} signs a different root (hash {other.root_hash.hex()}), not the draft "
                            f"{base.root_hash.hex()}; every founder must sign the same draft")
        for sig in other.signatures:
            merged = merged.with_signature(sig)
    return merged


def sign_command(draft: Path, key: Path, out: Path, expect_hash: bytes | None, passphrase_env: str | None,
                 passphrase_fd: int | None, as_json: bool, previous: SignedRoot | None = None) -> None:
    """Sign a draft root with one admin key and write a file holding only that signature.

    Raises:
        ToolError: the draft does not hash to ``expect_hash``, or the key is not an admin key
            of the draft (or of ``previous``).
        KeyFileError: the key file cannot be opened.
    """
    signed = load_signed_root(draft, "draft root")
    if expect_hash is not None and signed.root_hash != expect_hash:
        raise ToolError(f"{draft} hashes to {signed.root_hash.hex()}, not the expected {expect_hash.hex()}: "
                        "do not sign it")
    roots = [signed.root] + ([previous.root] if previous is not None else [])
    signing_key = load_key(key, passphrase_env, passphrase_fd)
    kid = key_id(public_key_of(signing_key))
    owners = [r.admin_key_owner(kid) for r in roots if r.admin_key_owner(kid) is not None]
    if not owners:
        where = f"root version {signed.root.version}" + (" or its predecessor" if previous is not None else "")
        raise ToolError(f"key {kid.hex()} in {key} is not an admin key of any member of {where}; "
                        "check that you are signing with your admin key file")
    sig = sign_root(signed.payload, signing_key)
    write_bytes(out, SignedRoot(signed.payload, signed.root, (sig,)).to_cbor())
    doc = {"file": str(out), "hash": signed.root_hash.hex(), "version": signed.root.version, "member": owners[0],
           "key_id": kid.hex()}
    emit(as_json, doc, [f"signed {signed.root.network} root version {signed.root.version} as member {owners[0]}",
                        f"admin key id: {kid.hex()}", f"root hash: {signed.root_hash.hex()}", f"wrote {out}"])


# ---------------------------------------------------------------------------- draft


