"""Authorisation rules: who may sign which entry in whose log (specs/06-entries.md 6.3).

:func:`authorize` checks one decoded entry against the registry state that
the log's earlier entries built, and returns the public key that must have
signed it. It changes nothing: :class:`ledger.registry.RegistryState` applies
the entry's effect, collects the signature checks as :data:`SignatureJob`
tuples, and runs them through a ``verify_signatures`` callable such as
:func:`verify_sequential` or :class:`ledger.memberlog.ParallelVerifier`.

Every refusal is an :class:`~ledger.errors.AuthorizationError` whose message
starts with the log and entry index and names the rule (``spec 6.3.n``).
Each check below cites the rule it implements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn, Protocol

from ledger.bodies import (
    CredentialAnchor,
    CredentialStatus,
    GovernanceAdopt,
    IssuerKeyAdd,
    IssuerKeyRevoke,
    IssuerKeyRotate,
    IssuerRegister,
    IssuerUpdate,
    member_of,
)
from ledger.entries import UnverifiedEntry
from ledger.errors import AuthorizationError, VerificationError
from ledger.keys import key_id, next_key_digest, verify_ed25519
from ledger.records import LiveCredential, LiveIssuer, LiveKey
from ledger.roots import Root

__all__ = [
    "RuleView",
    "SignatureJob",
    "SignatureVerifier",
    "authorize",
    "first_failure",
    "verify_sequential",
    "where",
]

#: One signature check: (Ed25519 public key, Sig_structure bytes, signature).
SignatureJob = tuple[bytes, bytes, bytes]
#: Checks a batch of signatures; returns only if all verify (spec 6.3.15).
SignatureVerifier = Callable[[Sequence[SignatureJob]], None]


class RuleView(Protocol):
    """What the rules read from the registry state (implemented by RegistryState)."""

    def live_issuer(self, issuer: str) -> LiveIssuer | None:
        """The issuer's live record, or None if not registered."""

    def live_key(self, log: str, kid: bytes) -> LiveKey | None:
        """The issuer key with this key id in ``log``, or None."""

    def live_credential(self, issuer: str, credential_id: bytes) -> LiveCredential | None:
        """The credential's live record, or None if no entry named it."""

    def admin_keys(self, version: int, member: str) -> Mapping[bytes, bytes] | None:
        """Key id -> admin public key of ``member`` in root ``version``; None if not a member."""

    def governance_root(self, version: int) -> Root:
        """The verified governance root of ``version`` (at most the chain's newest)."""


def where(log: str, index: int) -> str:
    """The prefix of every message about one entry: ``"log VN entry 17"``."""
    return f"log {log} entry {index}"


def _refuse(rule: str, log: str, index: int, message: str) -> NoReturn:
    raise AuthorizationError(f"{where(log, index)}: spec {rule}: {message}")


# --------------------------------------------------------------------------- shared checks


def _admin_signer(e: UnverifiedEntry, log: str, index: int, admins: Mapping[bytes, bytes]) -> bytes:
    # spec 6.3.5: an admin key of the log's member in the root version the entry names
    pub = admins.get(e.kid)
    if pub is None:
        _refuse("6.3.5", log, index, f"{e.type} must be signed by an admin key of {log} in root version "
                f"{e.root}; kid {e.kid.hex()} is not one")
    return pub


def _issuer_namespace(issuer: str, log: str, index: int) -> None:
    # spec 6.3.2: a log holds only its own member's issuers
    if member_of(issuer) != log:
        _refuse("6.3.2", log, index, f"issuer {issuer} does not belong to member {log}")


def _registered(view: RuleView, issuer: str, log: str, index: int, rule: str) -> LiveIssuer:
    live = view.live_issuer(issuer)
    if live is None:
        _refuse(rule, log, index, f"issuer {issuer} is not registered")
    return live


def _usable_key(view: RuleView, e: UnverifiedEntry, issuer: str, log: str, index: int) -> LiveKey:
    # spec 6.3.6: the signer is a key of the issuer the entry is about, usable
    # at the entry's author time, and the issuer is active
    live = _registered(view, issuer, log, index, "6.3.6")
    if live.current.status != "active":
        _refuse("6.3.6", log, index, f"issuer {issuer} is {live.current.status}")
    key = view.live_key(log, e.kid)
    if key is None or key.issuer != issuer:
        _refuse("6.3.6", log, index, f"{e.type} must be signed by a key of issuer {issuer}; "
                f"kid {e.kid.hex()} is not one")
    problem = key.unusable_at(e.time)
    if problem is not None:
        _refuse("6.3.6", log, index, f"key {e.kid.hex()} of {issuer} is {problem} (entry time {e.time})")
    return key


def _new_kid(view: RuleView, kid: bytes, log: str, index: int, rule: str) -> None:
    if view.live_key(log, kid) is not None:
        _refuse(rule, log, index, f"key {kid.hex()} is already on log {log}")


# --------------------------------------------------------------------------- one check per entry type


def _check_register(view: RuleView, e: UnverifiedEntry, log: str, index: int, admins: Mapping[bytes, bytes]) -> bytes:
    body = e.body
    assert isinstance(body, IssuerRegister)
    _issuer_namespace(body.issuer, log, index)
    # spec 6.3.7: an issuer is registered once
    if view.live_issuer(body.issuer) is not None:
        _refuse("6.3.7", log, index, f"issuer {body.issuer} is already registered")
    return _admin_signer(e, log, index, admins)


def _check_update(view: RuleView, e: UnverifiedEntry, log: str, index: int, admins: Mapping[bytes, bytes]) -> bytes:
    body = e.body
    assert isinstance(body, IssuerUpdate)
    _issuer_namespace(body.issuer, log, index)
    _registered(view, body.issuer, log, index, "6.3.8")  # spec 6.3.8
    return _admin_signer(e, log, index, admins)


def _check_key_add(view: RuleView, e: UnverifiedEntry, log: str, index: int, admins: Mapping[bytes, bytes]) -> bytes:
    body = e.body
    assert isinstance(body, IssuerKeyAdd)
    _issuer_namespace(body.issuer, log, index)
    # spec 6.3.9: the issuer exists and the key is new to the log
    _registered(view, body.issuer, log, index, "6.3.9")
    _new_kid(view, key_id(body.key), log, index, "6.3.9")
    return _admin_signer(e, log, index, admins)


def _check_key_rotate(view: RuleView, e: UnverifiedEntry, log: str, index: int,
                      admins: Mapping[bytes, bytes]) -> bytes:
    body = e.body
    assert isinstance(body, IssuerKeyRotate)
    _issuer_namespace(body.issuer, log, index)
    issuer = _registered(view, body.issuer, log, index, "6.3.10")
    # spec 6.3.10 (a): the issuer is active
    if issuer.current.status != "active":
        _refuse("6.3.10", log, index, f"issuer {body.issuer} is {issuer.current.status}")
    # (b): the old key is a key of this issuer, committed to a next key, not yet rotated out
    old = view.live_key(log, body.old_kid)
    if old is None or old.issuer != body.issuer:
        _refuse("6.3.10", log, index, f"old_kid {body.old_kid.hex()} is not a key of {body.issuer}")
    if old.next_key_digest is None:
        _refuse("6.3.10", log, index, f"key {body.old_kid.hex()} carries no pre-rotation commitment")
    if old.superseded() is not None:
        _refuse("6.3.10", log, index, f"key {body.old_kid.hex()} has already been rotated")
    # (c): the revealed key is the one committed to
    if next_key_digest(body.key) != old.next_key_digest:
        _refuse("6.3.10", log, index, f"the new key does not match the commitment of key {body.old_kid.hex()}")
    # (d): signed by the revealed key, which is new to the log
    new_kid = key_id(body.key)
    if e.kid != new_kid:
        _refuse("6.3.10", log, index, f"issuer.key.rotate must be signed by the new key {new_kid.hex()}, "
                f"not {e.kid.hex()}")
    _new_kid(view, new_kid, log, index, "6.3.10")
    # (e): the new key's window is not empty
    if body.valid_until is not None and body.valid_until <= e.time:
        _refuse("6.3.10", log, index, f"valid_until {body.valid_until} is not after the rotation time {e.time}")
    return body.key


def _check_key_revoke(view: RuleView, e: UnverifiedEntry, log: str, index: int,
                      admins: Mapping[bytes, bytes]) -> bytes:
    body = e.body
    assert isinstance(body, IssuerKeyRevoke)
    _issuer_namespace(body.issuer, log, index)
    # spec 6.3.11 (a): the key is a key of this issuer
    target = view.live_key(log, body.kid)
    if target is None or target.issuer != body.issuer:
        _refuse("6.3.11", log, index, f"kid {body.kid.hex()} is not a key of {body.issuer}")
    # (b): a time in the past only for a compromised key
    if body.effective < e.time and body.reason != "compromised":
        _refuse("6.3.11", log, index, f"effective time {body.effective} is before the entry time {e.time}; "
                f"only a compromised key may be revoked from the past")
    # (c): a further revocation must bring the revocation forward
    earliest = min((ev.effective for ev in target.events if ev.status == "revoked"), default=None)
    if earliest is not None and body.effective >= earliest:
        _refuse("6.3.11", log, index, f"key {body.kid.hex()} is already revoked from {earliest}")
    # (d): signed by an admin key of the member (6.3.5) or a usable key of the issuer (6.3.6)
    pub = admins.get(e.kid)
    if pub is not None:
        return pub
    return _usable_key(view, e, body.issuer, log, index).key


def _check_anchor(view: RuleView, e: UnverifiedEntry, log: str, index: int, admins: Mapping[bytes, bytes]) -> bytes:
    body = e.body
    assert isinstance(body, CredentialAnchor)
    _issuer_namespace(body.issuer, log, index)
    # spec 6.3.12: signed by a usable key of the issuer
    return _usable_key(view, e, body.issuer, log, index).key


def _check_status(view: RuleView, e: UnverifiedEntry, log: str, index: int, admins: Mapping[bytes, bytes]) -> bytes:
    body = e.body
    assert isinstance(body, CredentialStatus)
    _issuer_namespace(body.issuer, log, index)
    # spec 6.3.13 (a): signed by a usable key of the credential's issuer
    key = _usable_key(view, e, body.issuer, log, index)
    # (b): revocation is final, and every status entry changes the status
    live = view.live_credential(body.issuer, body.credential_id)
    current = live.status if live is not None else "active"
    if current == "revoked":
        _refuse("6.3.13", log, index, f"credential {body.credential_id.hex()} of {body.issuer} is revoked")
    if body.status == current:
        _refuse("6.3.13", log, index, f"credential {body.credential_id.hex()} of {body.issuer} is already {current}")
    return key.key


def _check_policy(view: RuleView, e: UnverifiedEntry, log: str, index: int, admins: Mapping[bytes, bytes]) -> bytes:
    # spec 6.3.14: a member's policy is signed by one of its admin keys
    return _admin_signer(e, log, index, admins)


def _check_adopt(view: RuleView, e: UnverifiedEntry, log: str, index: int, admins: Mapping[bytes, bytes]) -> bytes:
    body = e.body
    assert isinstance(body, GovernanceAdopt)
    # spec 6.3.17 (a): the entry is made under the root it adopts (6.3.4 checked that the log's member is
    # a member of it and that it is not older than the previous entry's)
    if e.root != body.version:
        _refuse("6.3.17", log, index, f"governance.adopt of version {body.version} must be made under root version"
                f" {body.version}, not {e.root}")
    # (b): the root is the chain's root of that version
    root = view.governance_root(body.version)
    if root.root_hash != body.root_hash:
        _refuse("6.3.17", log, index, f"root hash {body.root_hash.hex()} is not that of root version {body.version}"
                f" ({root.root_hash.hex()})")
    # (c): signed by the log's owner's node key in that root
    node_key = root.node_key_of(log)
    if e.kid != key_id(node_key):
        _refuse("6.3.17", log, index, f"governance.adopt must be signed by the node key of {log} in root version"
                f" {body.version}; kid {e.kid.hex()} is not it")
    return node_key


_Check = Callable[[RuleView, UnverifiedEntry, str, int, Mapping[bytes, bytes]], bytes]
_CHECKS: dict[str, _Check] = {
    "issuer.register": _check_register,
    "issuer.update": _check_update,
    "issuer.key.add": _check_key_add,
    "issuer.key.rotate": _check_key_rotate,
    "issuer.key.revoke": _check_key_revoke,
    "credential.anchor": _check_anchor,
    "credential.status": _check_status,
    "member.policy": _check_policy,
    "governance.adopt": _check_adopt,
}


def authorize(view: RuleView, log: str, index: int, e: UnverifiedEntry, prev_time: int, prev_root: int,
              latest_root: int) -> bytes:
    """Check every rule of spec 6.3 for one entry and return the key that must have signed it.

    Args:
        view: the registry state holding the log's entries before ``index``.
        log: the member id of the log the entry is appended to.
        index: the entry's position in that log.
        e: the decoded entry.
        prev_time: author time of the log's previous entry (0 if none).
        prev_root: root version of the log's previous entry (1 if none).
        latest_root: the newest governance root version known.

    Returns:
        The Ed25519 public key whose signature the entry must carry; its key
        id equals the entry's ``kid``.

    Raises:
        AuthorizationError: a rule refuses the entry; the message names the
            log, the index and the rule.
    """
    # spec 6.3.1: an entry names the log it is appended to
    if e.log != log:
        _refuse("6.3.1", log, index, f"the entry names log {e.log}")
    # spec 6.3.3: author times never decrease within a log
    if e.time < prev_time:
        _refuse("6.3.3", log, index, f"author time {e.time} is before the previous entry's {prev_time}")
    # spec 6.3.4: a known root version, never older than the previous entry's,
    # of which the log's member is a member
    if e.root > latest_root:
        _refuse("6.3.4", log, index, f"root version {e.root} is newer than the latest known, {latest_root}")
    if e.root < prev_root:
        _refuse("6.3.4", log, index, f"root version {e.root} is older than the root version {prev_root} this log"
                " adopted; sign the entry under the current governance root")
    # spec 6.3.17 (d): a log adopts each root once, and only a newer one
    if e.type == "governance.adopt" and e.root <= prev_root:
        _refuse("6.3.17", log, index, f"the log already writes under root version {prev_root}")
    admins = view.admin_keys(e.root, log)
    if admins is None:
        _refuse("6.3.4", log, index, f"{log} is not a member in root version {e.root}")
    return _CHECKS[e.type](view, e, log, index, admins)


# --------------------------------------------------------------------------- signatures (spec 6.3.15)


def verify_sequential(jobs: Sequence[SignatureJob]) -> None:
    """Verify signature jobs one after another in this thread.

    Raises:
        VerificationError: the first job whose signature does not verify.
    """
    for pub, message, signature in jobs:
        verify_ed25519(pub, message, signature)


def first_failure(jobs: Sequence[SignatureJob]) -> int | None:
    """The position of the first job that does not verify, or None (used to name a failing entry)."""
    for i, (pub, message, signature) in enumerate(jobs):
        try:
            verify_ed25519(pub, message, signature)
        except VerificationError:
            return i
    return None
