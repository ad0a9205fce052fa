"""The verification report: indication, sub-indication, every check, the ledger state used.

Specified in specs/credentials.md section 6, using the vocabulary of ETSI EN
319 102-1 (indications TOTAL-PASSED, TOTAL-FAILED, INDETERMINATE and their
sub-indications). A report is plain frozen data: :meth:`VerificationReport.to_dict`
and :meth:`VerificationReport.to_json` give the stable JSON form whose keys
the spec documents, :meth:`VerificationReport.render_text` a text for people.
Deciding the indication from the checks is :func:`conclude`; making the
checks is :mod:`credentials.verify`.
"""

from __future__ import annotations

import datetime
import json
import operator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from credentials.cwt import Claims
from credentials.view import FinalCheckpoint, GovernanceInfo, ProofOfExistence

__all__ = [
    "INDETERMINATE",
    "REPORT_VERSION",
    "SUB_INDICATIONS",
    "TOTAL_FAILED",
    "TOTAL_PASSED",
    "Check",
    "LogState",
    "VerificationReport",
    "conclude",
    "failed",
    "json_value",
    "passed",
]

TOTAL_PASSED = "TOTAL-PASSED"
TOTAL_FAILED = "TOTAL-FAILED"
INDETERMINATE = "INDETERMINATE"

#: Sub-indications this verifier uses, with the indication each comes with.
#: ``SUSPENDED`` and ``TIMESTAMP_ORDER_FAILURE`` qualify INDETERMINATE;
#: ``EXPIRED``, ``NOT_YET_VALID`` may come with either (spec 6.2).
SUB_INDICATIONS: dict[str, tuple[str, ...]] = {
    "FORMAT_FAILURE": (TOTAL_FAILED,),
    "NO_SIGNING_CERTIFICATE_FOUND": (INDETERMINATE,),
    "SIG_CRYPTO_FAILURE": (TOTAL_FAILED,),
    "HASH_FAILURE": (TOTAL_FAILED,),
    "CHAIN_CONSTRAINTS_FAILURE": (INDETERMINATE,),
    "REVOKED": (TOTAL_FAILED,),
    "REVOKED_NO_POE": (INDETERMINATE,),
    "TIMESTAMP_ORDER_FAILURE": (INDETERMINATE,),
    "NOT_YET_VALID": (TOTAL_FAILED, INDETERMINATE),
    "EXPIRED": (TOTAL_FAILED,),
    "SUSPENDED": (INDETERMINATE,),
    "TRY_LATER": (INDETERMINATE,),
    "EQUIVOCATION": (INDETERMINATE,),
}

#: Version of the JSON report format (spec 6.3).
REPORT_VERSION = 1

PASSED = "passed"
FAILED = "failed"


class Check(NamedTuple):
    """One check made: its step number (``"4.6"``), stable name, and what it found.

    ``indication`` and ``sub_indication`` are None for a passed check. The
    human-readable :attr:`detail` is ``template.format(*args)``, rendered
    only when read: a verifier makes sixteen checks per credential and most
    reports are only ever asked for their verdict. (A named tuple rather than
    a frozen dataclass for the same reason: it is built three times faster.)
    """

    step: str
    name: str
    indication: str | None
    sub_indication: str | None
    template: str
    args: tuple[Any, ...] = ()

    @property
    def outcome(self) -> str:
        """``"passed"`` or ``"failed"``."""
        return PASSED if self.indication is None else FAILED

    @property
    def detail(self) -> str:
        """What the check found, in words."""
        return self.template.format(*self.args) if self.args else self.template

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (spec 6.3)."""
        return {"step": self.step, "name": self.name, "outcome": self.outcome, "detail": self.detail,
                "indication": self.indication, "sub_indication": self.sub_indication}


_new_check = tuple.__new__
_indication = operator.itemgetter(2)  # Check.indication


def passed(step: str, name: str, template: str, *args: Any) -> Check:
    """A passed check."""
    return _new_check(Check, (step, name, None, None, template, args))  # type: ignore[type-var]


def failed(step: str, name: str, indication: str, sub_indication: str, template: str, *args: Any) -> Check:
    """A failed check with the indication and sub-indication it implies."""
    return _new_check(Check, (step, name, indication, sub_indication, template, args))  # type: ignore[type-var]


@dataclass(frozen=True, slots=True)
class LogState:
    """The final state of one log the verdict rests on: its newest final checkpoint and its age."""

    checkpoint: FinalCheckpoint
    witnessed_time: int | None
    age_seconds: int | None

    def to_dict(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {"log": cp.log, "size": cp.size, "root_hash": cp.root_hash.hex(),
                "witnessed_time": self.witnessed_time, "age_seconds": self.age_seconds,
                "cosignatures": [{"witness": c.witness, "timestamp": c.timestamp} for c in cp.cosignatures]}


def conclude(checks: tuple[Check, ...]) -> tuple[str, str | None]:
    """The indication of a list of checks: the first TOTAL-FAILED one, else the first INDETERMINATE one.

    A known revocation or a bad signature outweighs an unknown (spec 6.1); evidence of two histories
    (INDETERMINATE/EQUIVOCATION) outweighs everything, since the ledger the answer rests on is in doubt; a
    stale governance head (check 8.0) comes before the other INDETERMINATE checks, which it may explain.
    """
    if not any(map(_indication, checks)):  # every check passed: the common case, read at C speed
        return TOTAL_PASSED, None
    if any(c.sub_indication == "EQUIVOCATION" for c in checks):
        # Evidence that members showed two histories outweighs everything: no answer from either holds.
        return INDETERMINATE, "EQUIVOCATION"
    first_indeterminate: Check | None = next((c for c in checks if c.name == "governance-current"
                                              and c.indication == INDETERMINATE), None)  # a stale head first
    for c in checks:
        if c.indication == TOTAL_FAILED:
            return TOTAL_FAILED, c.sub_indication
        if c.indication == INDETERMINATE and first_indeterminate is None:
            first_indeterminate = c
    if first_indeterminate is not None:
        return INDETERMINATE, first_indeterminate.sub_indication
    return TOTAL_PASSED, None


def json_value(v: Any) -> Any:
    """A JSON form of decoded claim values: bytes as lowercase hex, tuples as lists, records as maps."""
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    if hasattr(v, "to_map"):
        return json_value(v.to_map())
    return v


def claims_json(claims: Claims) -> dict[str, Any]:
    """The claims of a credential in JSON form (spec 6.3)."""
    return {"iss": claims.iss, "sub": claims.sub, "iat": claims.iat, "nbf": claims.nbf, "exp": claims.exp,
            "cti": claims.cti.hex(), "type": claims.document_type, "attestation": json_value(claims.attestation)}


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The outcome of :func:`credentials.verify.verify` (spec 6).

    Attributes:
        indication: TOTAL-PASSED, TOTAL-FAILED or INDETERMINATE.
        sub_indication: why, when not TOTAL-PASSED.
        subject: ``"credential"`` or ``"document-signature"``.
        checks: every check made, in step order.
        verified_at: the ``now`` the verification used.
        as_member: the member whose policy was applied.
        digest: SHA-256 of the credential or signature bytes.
        kid: the key id named, if the input decoded that far.
        document_type: the profile name (credential) or envelope document type.
        issuer: the issuer id the key belongs to, if found.
        member: the member that registered the issuer.
        signing_time: ``iat`` of a credential, ``signed_at`` of a document.
        claims: a credential's claims, once decoded.
        envelope: a document signature's hash envelope, in JSON form.
        governance: the governance root used.
        ledger_state: the newest final checkpoint of each log consulted.
        proof_of_existence: the earliest anchor under a final checkpoint, if any.
        signer: for a document signed under an authorised-signatory
            credential, the report on that credential.
    """

    indication: str
    sub_indication: str | None
    subject: str
    checks: tuple[Check, ...]
    verified_at: int
    as_member: str
    digest: bytes | None = None
    kid: bytes | None = None
    document_type: str | None = None
    issuer: str | None = None
    member: str | None = None
    signing_time: int | None = None
    claims: Claims | None = None
    envelope: dict[str, Any] | None = None
    governance: GovernanceInfo | None = None
    ledger_state: tuple[LogState, ...] = ()
    proof_of_existence: ProofOfExistence | None = None
    signer: VerificationReport | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        """Whether the indication is TOTAL-PASSED (a convenience; the report is the answer)."""
        return self.indication == TOTAL_PASSED

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form (spec 6.3): every key always present, None as null."""
        gov = self.governance
        poe = self.proof_of_existence
        return {
            "version": REPORT_VERSION,
            "indication": self.indication,
            "sub_indication": self.sub_indication,
            "subject": self.subject,
            "verified_at": self.verified_at,
            "as_member": self.as_member,
            "digest": self.digest.hex() if self.digest is not None else None,
            "kid": self.kid.hex() if self.kid is not None else None,
            "document_type": self.document_type,
            "issuer": self.issuer,
            "member": self.member,
            "signing_time": self.signing_time,
            "claims": claims_json(self.claims) if self.claims is not None else None,
            "envelope": self.envelope,
            "checks": [c.to_dict() for c in self.checks],
            "governance": None if gov is None else {
                "network": gov.network, "version": gov.version, "members": sorted(gov.members),
                "faulty": gov.faulty, "quorum": gov.quorum},
            "ledger_state": [s.to_dict() for s in self.ledger_state],
            "proof_of_existence": None if poe is None else {
                "log": poe.log, "index": poe.index, "time": poe.time, "checkpoint_size": poe.checkpoint_size},
            "signer": self.signer.to_dict() if self.signer is not None else None,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text with sorted keys."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, ensure_ascii=False)

    def render_text(self) -> str:
        """A plain-text account for people: verdict, subject, checks, ledger state."""
        lines: list[str] = []
        self._render(lines, "")
        return "\n".join(lines) + "\n"

    def _render(self, out: list[str], pad: str) -> None:
        verdict = self.indication + (f" / {self.sub_indication}" if self.sub_indication else "")
        out.append(f"{pad}{verdict}")
        what = self.document_type or "unknown type"
        out.append(f"{pad}  {self.subject}: {what}")
        if self.issuer:
            out.append(f"{pad}  issuer: {self.issuer} (member {self.member or '?'})")
        if self.kid is not None:
            out.append(f"{pad}  key id: {self.kid.hex()}")
        if self.signing_time is not None:
            out.append(f"{pad}  signing time (claimed): {_when(self.signing_time)}")
        if self.claims is not None:
            c = self.claims
            out.append(f"{pad}  credential id: {c.cti.hex()}" + (f", subject: {c.sub}" if c.sub else ""))
            if c.nbf is not None or c.exp is not None:
                out.append(f"{pad}  valid: {_when(c.nbf) if c.nbf is not None else '-'}"
                           f" to {_when(c.exp) if c.exp is not None else '-'}")
        if self.envelope is not None:
            e = self.envelope
            out.append(f"{pad}  document: {e.get('file_name')} ({e.get('media_type')}), "
                       f"{e.get('hash_alg')} {e.get('digest')}")
        out.append(f"{pad}  verified at {_when(self.verified_at)} as member {self.as_member}")
        out.append(f"{pad}  checks:")
        for ch in self.checks:
            mark = "ok  " if ch.indication is None else "FAIL"
            tail = f" [{ch.indication}/{ch.sub_indication}]" if ch.indication else ""
            out.append(f"{pad}    {mark} {ch.step:<4} {ch.name}: {ch.detail}{tail}")
        if self.proof_of_existence is not None:
            p = self.proof_of_existence
            out.append(f"{pad}  proof of existence: anchored in log {p.log} at index {p.index}, "
                       f"existed by {_when(p.time)} (checkpoint size {p.checkpoint_size})")
        if self.governance is not None:
            g = self.governance
            out.append(f"{pad}  governance: network {g.network} root v{g.version}, members "
                       f"{', '.join(sorted(g.members))}, f={g.faulty}, quorum {g.quorum}")
        for s in self.ledger_state:
            cp = s.checkpoint
            age = f"{s.age_seconds} s old" if s.age_seconds is not None else "age unknown"
            out.append(f"{pad}  log {cp.log}: size {cp.size}, root {cp.root_hash.hex()}, {age}")
            cos = ", ".join(f"{c.witness}@{c.timestamp}" for c in cp.cosignatures)
            out.append(f"{pad}    cosigned by {cos}")
        if self.signer is not None:
            out.append(f"{pad}  signer credential:")
            self.signer._render(out, pad + "    ")


def _when(t: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + f" ({t})"
    except (OverflowError, OSError, ValueError):
        return str(t)
