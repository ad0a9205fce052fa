"""Light verification: a ledger view built from state proofs, and proof bundles that carry them offline.

Specified in specs/state.md section S.7. A light verifier never holds a log: it holds, for each log a
credential needs (the issuer's member's, and the verifying member's for its policy), one node answer of
spec A.13 (the keys' values or absence, each with a proof against the state root of a final checkpoint,
and the entries the values list) and, for the anchor, the first final checkpoint covering it with a
consistency proof to the newest. :func:`open_answer` and :func:`open_existence`
check all of it; :func:`light_view` turns it into the :class:`~credentials.view.RegistryView` the
verification engine judges against, exactly as it judges a full replica.

A :class:`ProofBundle` is those node answers and proofs, byte for byte as received, with the governance
chain, in one CBOR file: ``mekong credential bundle`` writes it and ``mekong verify --bundle`` checks it with
no network. This module does no I/O and reads no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from credentials.bundlenotes import compact_note, expand_note
from credentials.cwt import UnverifiedCredential, credential_digest
from credentials.docsig import UnverifiedDocumentSignature
from credentials.profiles import AuthorisedSignatory
from credentials.view import FinalCheckpoint, RegistryView, StatusEvent
from ledger import cbor, merkle
from ledger.bodies import member_of
from ledger.entries import UnverifiedEntry
from ledger.errors import DecodeError, VerificationError
from ledger.finality import Finality, open_signed, state_reference
from ledger.governance import GovernanceChain
from ledger.registry import RegistryState
from ledger.roots import SignedRoot
from ledger.state import StateKey, StateValue
from ledger.statemap import StateProof, verify_state_proof

__all__ = ["BUNDLE_TYPE", "BUNDLE_VERSION", "ExistenceProof", "OpenedAnswer", "ProofBundle", "ProvenView", "bundle_chain",
           "bundle_roots", "key_issuers", "light_view", "open_answer", "open_answers",
           "open_bundle", "open_existence", "required_document_keys", "required_keys"]

BUNDLE_TYPE = "mekong-proof-bundle"
BUNDLE_VERSION = 2
#: Largest bundle accepted (a bundle is a few kilobytes; this bounds what a hostile file costs).
MAX_BUNDLE = 1 << 20
_LIMITS = cbor.CborLimits(max_size=MAX_BUNDLE, max_depth=8, max_items=20_000)


@dataclass(frozen=True, slots=True)
class OpenedAnswer:
    """A verified state answer of one log (spec A.13): what the keys hold under a final checkpoint.

    Attributes:
        log: the member id.
        checkpoint: the final checkpoint the answer rests on, with the newest cosignature of each witness
            (freshness; as a bound of when entries existed it is later than the first, so never too early).
        values: state key -> its value, or None when the key holds nothing (proven absent).
        entries: index -> entry, for every entry the values list, each checked against its leaf hash.
        leaves: index -> leaf hash, for those entries.
        note: the checkpoint's note as served.
    """

    log: str
    checkpoint: FinalCheckpoint
    values: Mapping[StateKey, StateValue | None]
    entries: Mapping[int, UnverifiedEntry]
    leaves: Mapping[int, bytes]
    note: bytes


def _map(data: bytes, what: str, fields: Iterable[str]) -> dict[str, Any]:
    item = cbor.decode(data, _LIMITS)
    if not isinstance(item, dict) or not set(fields) <= set(item):
        raise DecodeError(f"{what} is a CBOR map with the fields {', '.join(fields)}")
    return item


def _final(data: bytes, chain: GovernanceChain, log: str, what: str) -> tuple[Any, Finality]:
    try:
        note, cp, fin = open_signed(data, chain, log)
        fin.require_final()
    except (DecodeError, VerificationError) as e:
        raise type(e)(f"{what} of log {log}: {e}") from e
    if len(note.signatures) != 1 + len(fin.cosigners):  # strict: a proof carries no line that does not verify
        raise VerificationError(f"{what} of log {log}: {len(note.signatures)} signature lines, of which only"
                                f" {len(fin.cosigners)} verify as member cosignatures besides the log's")
    return cp, fin


def open_answer(data: bytes, chain: GovernanceChain, log: str) -> OpenedAnswer:
    """Check a node's state answer for ``log`` (spec A.13) and return what it proves.

    Steps: the checkpoint opens under the root it names and is final; every proof verifies against its state
    root; every entry a value lists is present, names the log, and hashes to the leaf hash the value gives.

    Raises:
        DecodeError: the answer is malformed (the message says where).
        VerificationError: a signature, the quorum, a proof or a leaf hash does not check out.
    """
    doc = _map(data, f"the state answer of log {log}", ("size", "checkpoint", "answers", "entries"))
    if set(doc) != {"size", "checkpoint", "answers", "entries"} or not isinstance(doc["checkpoint"], bytes):
        raise DecodeError(f"the state answer of log {log} has exactly size, checkpoint, answers and entries")
    cp, fresh = _final(doc["checkpoint"], chain, log, "checkpoint")
    if cp.size != doc["size"]:
        raise VerificationError(f"the state answer of log {log} is for size {doc['size']}, its checkpoint for"
                                f" {cp.size}")
    state_root = state_reference(cp)
    values: dict[StateKey, StateValue | None] = {}
    if not isinstance(doc["answers"], list) or not isinstance(doc["entries"], list):
        raise DecodeError(f"the state answer of log {log}: answers and entries are arrays")
    for item in doc["answers"]:
        if not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], bytes):
            raise DecodeError(f"the state answer of log {log}: each answer is [key, value, proof]")
        key = StateKey.decode(item[0])
        value = item[1]
        if value is not None and not isinstance(value, bytes):
            raise DecodeError(f"the state answer of log {log}: the value of {key.kind} is bytes or null")
        verify_state_proof(state_root, key.path, value, StateProof.from_cbor(item[2]))
        values[key] = None if value is None else StateValue.decode(value)
    raws: dict[int, bytes] = {}
    for item in doc["entries"]:
        if not isinstance(item, list) or len(item) != 2 or type(item[0]) is not int or not isinstance(item[1], bytes):
            raise DecodeError(f"the state answer of log {log}: each entry is [index, bytes]")
        raws[item[0]] = item[1]
    entries: dict[int, UnverifiedEntry] = {}
    leaves: dict[int, bytes] = {}
    for v in values.values():
        for index, leaf in v.entries if v is not None else ():
            raw = raws.get(index)
            if raw is None:
                raise VerificationError(f"the state answer of log {log} lacks entry {index} that a value lists")
            if merkle.leaf_hash(raw) != leaf:
                raise VerificationError(f"entry {index} of log {log} is not the entry the state value lists")
            e = UnverifiedEntry.decode(raw)
            if e.log != log:
                raise VerificationError(f"entry {index} of log {log} names log {e.log}")
            entries[index], leaves[index] = e, leaf
    # The served note carries each witness's newest line: fresh, and a later (safe) bound for existence.
    checkpoint = FinalCheckpoint.of(log, cp.size, cp.root_hash, fresh.cosigners, fresh.cosigners)
    return OpenedAnswer(log, checkpoint, values, entries, leaves, doc["checkpoint"])


@dataclass(frozen=True, slots=True)
class ExistenceProof:
    """When an anchored entry existed: the first final checkpoint covering it, as received (spec S.7.2).

    No inclusion proof: the state answer already places the entry's leaf hash at its index in the answer's
    tree (its state root is final, so a quorum recomputed it from the entries); the consistency proof
    shows that the covering checkpoint's tree is a prefix of that tree, so the same leaf is in it.

    Attributes:
        log: the member id.
        index: the anchor entry's index.
        checkpoint: that checkpoint's note with its first cosignatures; empty when it is the answer's own
            checkpoint (the answer's note is used).
        consistency: the consistency proof from that checkpoint to the newest one (empty if it is the newest).
    """

    log: str
    index: int
    checkpoint: bytes
    consistency: tuple[bytes, ...]

    def to_cbor(self) -> dict[str, Any]:
        """The bundle's map for it (spec S.7.3): the note in compact form, null when it is the answer's."""
        return {"log": self.log, "index": self.index,
                "checkpoint": compact_note(self.checkpoint) if self.checkpoint else None,
                "consistency": list(self.consistency)}

    @classmethod
    def from_cbor(cls, item: Any) -> ExistenceProof:
        """Read :meth:`to_cbor`; raises DecodeError."""
        keys = ("log", "index", "checkpoint", "consistency")
        if not isinstance(item, dict) or set(item) != set(keys):
            raise DecodeError(f"an existence proof is a map of {', '.join(keys)}")
        if (not isinstance(item["log"], str) or type(item["index"]) is not int
                or not isinstance(item["consistency"], list) or not all(isinstance(h, bytes) for h in item["consistency"])):
            raise DecodeError("an existence proof has a text log, an integer index, a note and a hash array")
        note = b"" if item["checkpoint"] is None else expand_note(item["checkpoint"])
        return cls(item["log"], item["index"], note, tuple(item["consistency"]))


def open_existence(proof: ExistenceProof, chain: GovernanceChain, answer: OpenedAnswer) -> FinalCheckpoint:
    """Check that the anchor entry ``proof.index`` is in a final checkpoint consistent with the answer's.

    Raises:
        VerificationError: not the first anchor of a digest the answer proves, not final, not covering the
            entry, or its tree is not a prefix of the answer's checkpoint.
    """
    firsts = {v.entries[0][0] for k, v in answer.values.items() if k.kind == "anchor" and v is not None and v.entries}
    if proof.index not in firsts:
        raise VerificationError(f"log {proof.log}: entry {proof.index} is not the first anchor of a digest the state"
                                " answer proves")
    cp, fin = _final(proof.checkpoint or answer.note, chain, proof.log, "covering checkpoint")
    newest = answer.checkpoint
    if not proof.index < cp.size <= newest.size:
        raise VerificationError(f"log {proof.log}: a checkpoint of size {cp.size} cannot cover entry {proof.index}"
                                f" and precede the answer's size {newest.size}")
    if cp.size != newest.size:
        merkle.verify_consistency(cp.size, newest.size, list(proof.consistency), cp.root_hash, newest.root_hash)
    elif cp.root_hash != newest.root_hash:
        raise VerificationError(f"log {proof.log}: two final checkpoints of size {cp.size} with different roots")
    return FinalCheckpoint.of(proof.log, cp.size, cp.root_hash, fin.cosigners)


class ProvenView(RegistryView):
    """A :class:`RegistryView` over state answers that will not read an unasked status as "no status".

    In a replica a credential with no status entry is one never revoked; in a view built from a few
    answers it may be one whose status key nobody asked. So a status question whose key no answer proves
    raises instead of answering "none". A record not asked otherwise reads as absent: for an issuer, a key
    of a named issuer or a policy, absence fails verification; a key id looked up without its issuer, and a
    digest's anchors, need every log asked (a document signature's fetcher asks every log, S.7.4).
    """

    def __init__(self, state: RegistryState, checkpoints: Mapping[str, Sequence[FinalCheckpoint]],
                 proven: Mapping[str, Iterable[StateKey]]) -> None:
        super().__init__(state, checkpoints)
        self._proven = {log: frozenset(keys) for log, keys in proven.items()}

    def credential_status(self, issuer_id: str, credential_id: bytes) -> tuple[StatusEvent, ...]:
        """As :meth:`RegistryView.credential_status`; raises VerificationError when no answer proves the key."""
        log = member_of(issuer_id)
        if StateKey("status", (issuer_id, credential_id)) not in self._proven.get(log, ()):
            raise VerificationError(f"no state answer proves the status of credential {credential_id.hex()} of"
                                    f" {issuer_id} (log {log}): the light verifier did not ask for it")
        return super().credential_status(issuer_id, credential_id)


def light_view(chain: GovernanceChain, answers: Sequence[OpenedAnswer],
               existence: Sequence[FinalCheckpoint] = ()) -> RegistryView:
    """The verification engine's view over verified answers: each log as of its answer's checkpoint
    (a :class:`ProvenView`: it knows which keys were proven).

    Raises:
        DecodeError: two answers for one log, or entries that rely on entries not given.
    """
    state = RegistryState(chain)
    checkpoints: dict[str, list[FinalCheckpoint]] = {}
    for a in answers:
        if a.log in checkpoints:
            raise DecodeError(f"two state answers for log {a.log}")
        state.load(a.log, a.checkpoint.size, sorted(a.entries.items()))
        checkpoints[a.log] = [a.checkpoint]
    for cp in existence:
        if cp.log in checkpoints and all(c.size != cp.size for c in checkpoints[cp.log]):
            checkpoints[cp.log].append(cp)
    return ProvenView(state, checkpoints, {a.log: a.values for a in answers})


# --------------------------------------------------------------------------- bundles (spec S.7.3)


@dataclass(frozen=True, slots=True)
class ProofBundle:
    """Everything a light verification fetched, to verify one credential again with no network.

    Every byte of it is checked (signatures, proofs, hashes); nothing in it is taken on trust, so it carries
    no fetch time of its own: its age is that of its checkpoints' newest cosignatures.

    Attributes:
        network: the network id.
        roots: the governance chain, each SignedRoot's CBOR, genesis first.
        answers: (log, state answer bytes of spec A.13, its note as served or trimmed by
            :func:`credentials.bundlenotes.trim_notes`).
        existence: the anchors' existence proofs.
    """

    network: str
    roots: tuple[bytes, ...]
    answers: tuple[tuple[str, bytes], ...]
    existence: tuple[ExistenceProof, ...] = ()

    def encode(self) -> bytes:
        """The bundle file: deterministic CBOR, each answer a map with its note in compact form (spec S.7.3).

        Raises:
            DecodeError: an answer is not an A.13 map, or a note is not in this project's key naming.
        """
        answers = []
        for log, data in self.answers:
            doc = _map(data, f"the state answer of log {log}", ("checkpoint",))
            answers.append([log, {**doc, "checkpoint": compact_note(doc["checkpoint"])}])
        return cbor.encode({"type": BUNDLE_TYPE, "version": BUNDLE_VERSION, "network": self.network,
                            "roots": list(self.roots), "answers": answers,
                            "existence": [e.to_cbor() for e in self.existence]})

    @classmethod
    def decode(cls, data: bytes) -> ProofBundle:
        """Read a bundle file; raises DecodeError naming what is wrong."""
        if len(data) > MAX_BUNDLE:
            raise DecodeError(f"a proof bundle is at most {MAX_BUNDLE} bytes, this one {len(data)}")
        fields = ("type", "version", "network", "roots", "answers", "existence")
        doc = _map(data, "a proof bundle", fields)
        if doc["type"] != BUNDLE_TYPE or doc["version"] != BUNDLE_VERSION:
            raise DecodeError(f"not a {BUNDLE_TYPE} of version {BUNDLE_VERSION}")
        if set(doc) != set(fields):
            raise DecodeError(f"a proof bundle has exactly the fields {', '.join(fields)}")
        if (not isinstance(doc["network"], str) or not isinstance(doc["roots"], list)
                or not all(isinstance(r, bytes) for r in doc["roots"]) or not doc["roots"]
                or not isinstance(doc["answers"], list) or not isinstance(doc["existence"], list)
                or not all(isinstance(a, list) and len(a) == 2 and isinstance(a[0], str) and isinstance(a[1], dict)
                           and "checkpoint" in a[1] for a in doc["answers"])):
            raise DecodeError("a proof bundle has a text network, roots and [log, answer map] pairs")
        answers = tuple((log, cbor.encode({**answer, "checkpoint": expand_note(answer["checkpoint"])}))
                        for log, answer in doc["answers"])
        return cls(doc["network"], tuple(doc["roots"]), answers,
                   tuple(ExistenceProof.from_cbor(e) for e in doc["existence"]))


def bundle_roots(chain: GovernanceChain) -> tuple[bytes, ...]:
    """The governance chain as a bundle carries it (spec S.7.3): the genesis without its founders' signatures
    (the pin alone is trusted, spec 5.4.1), every later root with its signatures."""
    genesis = chain.signed(1)
    return (replace(genesis, signatures=()).to_cbor(), *(chain.signed(r.version).to_cbor() for r in chain.roots[1:]))


def bundle_chain(bundle: ProofBundle, pinned_hash: bytes) -> GovernanceChain:
    """The governance chain the bundle carries, walked from the pinned genesis (spec 5.5).

    Raises:
        DecodeError: a root does not decode.
        VerificationError: the genesis is not the pinned one, or a later root does not verify.
    """
    genesis, *later = (SignedRoot.from_cbor(r) for r in bundle.roots)
    chain = GovernanceChain.from_pin(genesis, pinned_hash)
    for signed in later:
        chain.add(signed)
    if chain.current.network != bundle.network:
        raise VerificationError(f"the bundle names network {bundle.network!r}; its roots are of"
                                f" {chain.current.network!r}")
    return chain


def required_keys(credential: bytes, as_member: str) -> tuple[dict[str, list[StateKey]], bytes]:
    """The state keys a light verification of ``credential`` needs, by log, and its digest (spec S.7.1).

    The issuer's log: the issuer, the signing key, the anchor of the credential's digest, the credential's
    status; for an authorised-signatory credential, the status of the legal entity credential it names (in
    that credential's issuer's log); the verifying member's log: its policy.

    Raises:
        DecodeError: the credential does not decode.
    """
    cred = UnverifiedCredential.decode(credential)
    issuer = cred.claims.iss
    log = member_of(issuer)
    digest = credential_digest(credential)
    keys: dict[str, list[StateKey]] = {log: [StateKey("issuer", (issuer,)), StateKey("key", (cred.kid,)),
                                              StateKey("anchor", (digest,)),
                                              StateKey("status", (issuer, cred.claims.cti))]}
    if isinstance(cred.claims.attestation, AuthorisedSignatory):  # its legal entity's status is read too (step 7.2)
        ref = cred.claims.attestation.legal_entity
        keys.setdefault(member_of(ref.issuer), []).append(StateKey("status", (ref.issuer, ref.cti)))
    keys.setdefault(as_member, []).append(StateKey("policy"))
    return keys, digest


def required_document_keys(signature: bytes, as_member: str,
                           logs: Sequence[str]) -> tuple[dict[str, list[StateKey]], list[bytes]]:
    """The state keys a light verification of a document signature needs, by log, and the digests whose
    anchors prove existence (spec S.7.4).

    From every log in ``logs``: ``key <kid>`` and ``anchor <SHA-256 of the signature>`` (either may be in
    any log, and a key id in two logs is ambiguous, so absence elsewhere must be proven too); from the
    verifying member's log, ``policy``; with a signer credential, what :func:`required_keys` names for it,
    and its digest. The record of the issuer whose key is found is asked afterwards (:func:`key_issuers`).

    Raises:
        DecodeError: the signature does not decode.
    """
    sig = UnverifiedDocumentSignature.decode(signature)
    keys = {log: [StateKey("key", (sig.kid,)), StateKey("anchor", (sig.digest,))] for log in logs}
    keys.setdefault(as_member, []).append(StateKey("policy"))
    digests = [sig.digest]
    if sig.signer_credential is not None:
        try:
            more, digest = required_keys(sig.signer_credential, as_member)
        except DecodeError:  # the engine reports it (FORMAT_FAILURE); nothing more to fetch for it
            more, digest = {}, b""
        for log, wanted in more.items():
            keys.setdefault(log, []).extend(k for k in wanted if k not in keys.get(log, ()))
        digests += [digest] if digest else []
    return keys, digests


def key_issuers(answer: OpenedAnswer) -> set[StateKey]:
    """The ``issuer`` keys of the issuers whose keys ``answer`` proves present, that it does not answer yet."""
    wanted = set()
    for key, value in answer.values.items():
        if key.kind == "key" and value is not None:
            for index, _ in value.entries:
                issuer = getattr(answer.entries[index].body, "issuer", None)
                if isinstance(issuer, str):
                    wanted.add(StateKey("issuer", (issuer,)))
    return wanted - set(answer.values)


def open_bundle(bundle: ProofBundle, pinned_hash: bytes, credential: bytes, as_member: str) -> RegistryView:
    """Check a whole bundle, for verifying ``credential`` as ``as_member``, and return the view to verify with.

    Beyond every signature, proof and hash, the bundle must answer every key the credential needs
    (:func:`required_keys`): a proof of another key's absence says nothing of the one that matters.

    Raises:
        DecodeError, VerificationError: the bundle is malformed, does not check out, or lacks a needed key.
    """
    return open_answers(bundle, pinned_hash, required_keys(credential, as_member)[0])


def open_answers(bundle: ProofBundle, pinned_hash: bytes, needed: Mapping[str, Sequence[StateKey]]) -> RegistryView:
    """Check a whole bundle that must answer at least the keys ``needed`` (log -> keys); the view to verify with.

    Raises:
        DecodeError, VerificationError: the bundle is malformed, does not check out, or lacks a needed key.
    """
    chain = bundle_chain(bundle, pinned_hash)
    answers = {log: open_answer(data, chain, log) for log, data in bundle.answers}
    if len(answers) != len(bundle.answers):
        raise DecodeError("a proof bundle holds one answer per log")
    for log, keys in needed.items():
        missing = [k.kind for k in keys if log not in answers or k not in answers[log].values]
        if missing:
            raise VerificationError(f"the proof bundle does not answer, for log {log}: {', '.join(missing)};"
                                    " it is not a bundle for this subject and member")
    unknown = [e.log for e in bundle.existence if e.log not in answers]
    if unknown:
        raise DecodeError(f"existence proofs for logs the bundle holds no answer of: {', '.join(unknown)}")
    existence = [open_existence(e, chain, answers[e.log]) for e in bundle.existence]
    return light_view(chain, list(answers.values()), existence)

