"""The checks of verification steps 4, 5, 7 and 8, shared by credentials and document signatures.

Specified in specs/credentials.md section 5.2; each function names the step
it implements. They append :class:`~credentials.report.Check` values to a
:class:`Run` and never raise for anything about the input. The flow that
calls them (steps 1-3, and which steps apply) is :mod:`credentials.verify`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from credentials.cwt import DEFAULT_CREDENTIAL_LIMITS, CredentialLimits
from credentials.report import INDETERMINATE, TOTAL_FAILED, Check, LogState, failed, passed
from credentials.view import (
    GovernanceInfo,
    IssuerInfo,
    IssuerPeriod,
    KeyInfo,
    LedgerView,
    ProofOfExistence,
    StatusEvent,
    fresh_time,
)
from ledger.bodies import LOA_ORDER

__all__ = ["CLOCK_SKEW_SECONDS", "Run", "VerificationPolicy", "chain", "freshness", "governance_current", "issuer_at_signing_time",
           "key_at_signing_time", "single_history", "status"]

_CHAIN = "CHAIN_CONSTRAINTS_FAILURE"


#: The default tolerance, in seconds, when claimed or witnessed times are compared with the verifier's clock.
CLOCK_SKEW_SECONDS = 300


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    """What a verifier requires (spec 5.1).

    Attributes:
        as_member: the member whose recognition policy (``member.policy`` on
            the ledger) decides which other members' issuers are accepted.
            Its own issuers are always recognised.
        min_loa: the lowest issuer (and attested identity) level of assurance accepted.
        max_age_seconds: how old the newest final checkpoint of a log the
            answer rests on may be before the answer is INDETERMINATE/TRY_LATER.
        document_types: document types accepted; None accepts every type.
        clock_skew_seconds: tolerance when comparing claimed times with ``now``
            and with witnessed times.
        limits: size and nesting limits for the input.

    Raises:
        ValueError: a field out of range.
    """

    as_member: str
    min_loa: str = "substantial"
    max_age_seconds: int = 86400
    document_types: frozenset[str] | None = None
    clock_skew_seconds: int = CLOCK_SKEW_SECONDS
    limits: CredentialLimits = field(default=DEFAULT_CREDENTIAL_LIMITS, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.as_member, str) or not self.as_member:
            raise ValueError("as_member must be a member id")
        if self.min_loa not in LOA_ORDER:
            raise ValueError(f"min_loa must be one of {', '.join(LOA_ORDER)}")
        for name in ("max_age_seconds", "clock_skew_seconds"):
            v = getattr(self, name)
            if type(v) is not int or v < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        if self.document_types is not None and not isinstance(self.document_types, frozenset):
            raise ValueError("document_types must be a frozenset or None")

    def accepts(self, document_type: str) -> bool:
        """Whether the policy accepts documents of this type at all."""
        return self.document_types is None or document_type in self.document_types


class Run:
    """The checks and consulted logs of one verification in progress."""

    __slots__ = ("checks", "gov", "logs", "now", "policy", "view")

    def __init__(self, view: LedgerView, policy: VerificationPolicy, now: int, gov: GovernanceInfo) -> None:
        self.checks: list[Check] = []
        self.logs: dict[str, LogState | None] = {}
        self.view = view
        self.policy = policy
        self.now = now
        self.gov = gov

    def consult(self, log: str) -> None:
        """Record that the answer rests on ``log``'s newest final checkpoint."""
        if log in self.logs:
            return
        cp = self.view.latest_checkpoint(log)
        state = None
        if cp is not None:  # spec 7.4.4: freshness from the (f+1)-th newest cosignature, none from the future
            t = fresh_time(cp, self.gov.faulty, self.now + self.policy.clock_skew_seconds)
            state = LogState(cp, t, None if t is None else max(0, self.now - t))
        self.logs[log] = state

    def states(self) -> tuple[LogState, ...]:
        return tuple(s for s in self.logs.values() if s is not None)


def chain(run: Run, issuer: IssuerInfo, document_type: str, attested_loa: str | None, check_type: bool,
          poe: ProofOfExistence | None = None) -> None:
    """Step 4: registered, current member, accredited, level of assurance, policy type, recognised.

    ``poe`` is the credential's (or document's) proof of existence: a member that left the network
    still vouches for what provably existed before it left (4.2).
    """
    add = run.checks.append
    gov = run.gov
    policy = run.policy
    iid = issuer.issuer_id
    # 4.1
    if issuer.status == "active":
        add(passed("4.1", "issuer-registered", "{} registered by {}, active", iid, issuer.member))
    else:
        add(failed("4.1", "issuer-registered", INDETERMINATE, _CHAIN, "issuer {} is {}", iid, issuer.status))
    # 4.2
    add(_membership(gov, issuer.member, poe))
    # 4.3
    if document_type in issuer.document_types:
        add(passed("4.3", "accredited", "accredited for {}", document_type))
    else:
        add(failed("4.3", "accredited", INDETERMINATE, _CHAIN, "{} is not accredited for {} (only {})", iid,
                   document_type, ", ".join(issuer.document_types) or "nothing"))
    # 4.4
    need = LOA_ORDER[policy.min_loa]
    if LOA_ORDER.get(issuer.loa, -1) < need:
        add(failed("4.4", "level-of-assurance", INDETERMINATE, _CHAIN, "issuer level {} is below the policy "
                   "minimum {}", issuer.loa, policy.min_loa))
    elif attested_loa is not None and LOA_ORDER.get(attested_loa, -1) < need:
        add(failed("4.4", "level-of-assurance", INDETERMINATE, _CHAIN, "attested identity level {} is below "
                   "the policy minimum {}", attested_loa, policy.min_loa))
    else:
        add(passed("4.4", "level-of-assurance", "issuer {} (attested identity {}) >= {}", issuer.loa,
                   attested_loa or "n/a", policy.min_loa))
    # 4.5
    if check_type:
        add(policy_type(policy, document_type))
    # 4.6
    add(_recognition(run, issuer, document_type))


def _membership(gov: GovernanceInfo, member: str, poe: ProofOfExistence | None) -> Check:
    if member in gov.members:
        return passed("4.2", "member-current", "{} is a member of governance root v{}", member, gov.version)
    left = gov.departed.get(member)
    if left is None:
        return failed("4.2", "member-current", INDETERMINATE, _CHAIN, "{} is not a member of governance root v{}",
                      member, gov.version)
    version, when = left
    if poe is not None and poe.time < when:
        return passed("4.2", "member-current", "{} left the network at governance root v{} (issued {}); this existed"
                      " by {}, while it was a member", member, version, when, poe.time)
    return failed("4.2", "member-current", INDETERMINATE, _CHAIN, "{} left the network at governance root v{} (issued"
                  " {}), and nothing proves this existed before", member, version, when)


def policy_type(policy: VerificationPolicy, document_type: str) -> Check:
    """Step 4.5: the verifier's policy accepts the document type."""
    if policy.accepts(document_type):
        return passed("4.5", "policy-document-type", "policy accepts {}", document_type)
    return failed("4.5", "policy-document-type", INDETERMINATE, _CHAIN, "policy does not accept {}", document_type)


def _recognition(run: Run, issuer: IssuerInfo, document_type: str) -> Check:
    me = run.policy.as_member
    if issuer.member == me:
        return passed("4.6", "recognised", "issuer of {}'s own registry", me)
    rules = run.view.recognition(me)
    run.consult(me)
    if rules is None:
        return failed("4.6", "recognised", INDETERMINATE, _CHAIN, "{} has published no recognition policy; "
                      "only its own issuers are recognised", me)
    for r in rules:
        if r.covers(issuer.member, document_type, issuer.loa):  # spec 6.2.8, one implementation
            return passed("4.6", "recognised", "{} recognises {} issuers for {} at {} or above", me, r.member,
                          document_type, r.min_loa)
    return failed("4.6", "recognised", INDETERMINATE, _CHAIN, "{}'s policy does not recognise {} issuers for {} "
                  "at {}", me, issuer.member, document_type, issuer.loa)


_SEVERITY = {None: 0, INDETERMINATE: 1, TOTAL_FAILED: 2}


def _standing(p: IssuerPeriod, document_type: str, min_loa: str) -> str | None:
    # What keeps an issuer state from vouching for a document of this type, or None.
    if p.status != "active":
        return p.status
    if document_type not in p.document_types:
        return f"not accredited for {document_type}"
    if LOA_ORDER.get(p.loa, -1) < LOA_ORDER[min_loa]:
        return f"at level {p.loa}, below {min_loa}"
    return None


def issuer_at_signing_time(run: Run, issuer: IssuerInfo, document_type: str, signing_time: int,
                           poe: ProofOfExistence | None) -> Check:
    """Step 4.7: the issuer was registered, active and accredited when it signed, as far as can be proven.

    The signing time is claimed; the proof of existence bounds it from above (``now`` without one). Every
    issuer state in force between the two must vouch for the document: a suspension after the claimed
    time is overcome only by a proof that the document existed before it, as for keys (5.2).
    """
    history = issuer.history
    iid = issuer.issuer_id
    end = poe.time if poe is not None else run.now
    then = None
    for p in history:
        if p.time > signing_time:
            break
        then = p
    if then is None:
        return failed("4.7", "issuer-at-signing-time", INDETERMINATE, _CHAIN, "issuer {} was not registered at the "
                      "signing time {}", iid, signing_time)
    why = _standing(then, document_type, run.policy.min_loa)
    if why is not None:
        return failed("4.7", "issuer-at-signing-time", INDETERMINATE, _CHAIN, "issuer {} was {} at the signing time "
                      "{} (since {}, log {} entry {})", iid, why, signing_time, then.time, issuer.member, then.index)
    for p in history:
        if signing_time < p.time <= end and (why := _standing(p, document_type, run.policy.min_loa)) is not None:
            return failed("4.7", "issuer-at-signing-time", INDETERMINATE, "REVOKED_NO_POE", "issuer {} was {} from {}"
                          " (log {} entry {}), after the claimed signing time {}, with no proof the document existed"
                          " before", iid, why, p.time, issuer.member, p.index, signing_time)
    return passed("4.7", "issuer-at-signing-time", "issuer {} active and accredited for {} from the signing time {}"
                  " to {}", iid, document_type, signing_time, "its proof of existence" if poe else "now")


def key_at_signing_time(run: Run, key: KeyInfo, signing_time: int, poe: ProofOfExistence | None) -> None:
    """Step 5: validity window, revocations judged with proof of existence, and time order."""
    add = run.checks.append
    # 5.1
    if signing_time < key.valid_from:
        add(failed("5.1", "key-validity", TOTAL_FAILED, "NOT_YET_VALID", "signed at {}, before the key became "
                   "valid at {}", signing_time, key.valid_from))
    elif key.valid_until is not None and signing_time >= key.valid_until:
        add(failed("5.1", "key-validity", TOTAL_FAILED, "EXPIRED", "signed at {}, after the key expired at {}",
                   signing_time, key.valid_until))
    else:
        add(passed("5.1", "key-validity", "signing time {} inside the key's validity [{}, {})", signing_time,
                   key.valid_from, "open" if key.valid_until is None else key.valid_until))
    # 5.2
    worst: Check | None = None
    for r in key.revocations:
        if r.effective <= signing_time:
            c = failed("5.2", "key-revocation", TOTAL_FAILED, "REVOKED", "key {} from {} (log {} entry {}), at or "
                       "before the signing time {}", r.reason, r.effective, r.log, r.index, signing_time)
        elif r.reason != "compromised":
            c = passed("5.2", "key-revocation", "signed at {}, before the key was {} from {} (log {} entry {})",
                       signing_time, r.reason, r.effective, r.log, r.index)
        elif poe is not None and poe.time < r.effective:
            c = passed("5.2", "key-revocation", "key compromised from {} (log {} entry {}), but existence by {} is "
                       "proven (log {} entry {})", r.effective, r.log, r.index, poe.time, poe.log, poe.index)
        else:
            c = failed("5.2", "key-revocation", INDETERMINATE, "REVOKED_NO_POE", "key compromised from {} (log {} "
                       "entry {}), after the claimed signing time {}, with no proof of existence before {}",
                       r.effective, r.log, r.index, signing_time, r.effective)
        if worst is None or _SEVERITY[c.indication] > _SEVERITY[worst.indication]:
            worst = c
    add(worst or passed("5.2", "key-revocation", "key not revoked"))
    add(existence_order(run, signing_time, poe))


def existence_order(run: Run, signing_time: int, poe: ProofOfExistence | None) -> Check:
    """Step 5.3: a proof of existence may not be earlier than the claimed signing time (less the skew)."""
    if poe is None:
        return passed("5.3", "proof-of-existence", "no anchor under a final checkpoint (none required)")
    if poe.time + run.policy.clock_skew_seconds < signing_time:
        return failed("5.3", "proof-of-existence", INDETERMINATE, "TIMESTAMP_ORDER_FAILURE", "witnessed to exist "
                      "by {}, before its claimed signing time {}", poe.time, signing_time)
    return passed("5.3", "proof-of-existence", "existed by {} (log {} entry {})", poe.time, poe.log, poe.index)


def status(step: str, name: str, what: str, events: tuple[StatusEvent, ...], at: int | None,
           doc_poe: ProofOfExistence | None) -> Check:
    """Step 7: a credential's status now (``at`` None), or at a document's signing time ``at``.

    At a signing time, a revocation or suspension after it is overcome only by
    the document's proof of existence from before it (spec 5.2 step 7).
    """
    if not events:
        return passed(step, name, "{}: no status entries (active)", what)
    last = events[-1]
    if at is None:
        if last.status == "revoked":
            return failed(step, name, TOTAL_FAILED, "REVOKED", "{} revoked at {} (log {} entry {}): {}", what,
                          last.time, last.log, last.index, last.reason)
        if last.status == "suspended":
            return failed(step, name, INDETERMINATE, "SUSPENDED", "{} suspended at {} (log {} entry {}): {}", what,
                          last.time, last.log, last.index, last.reason)
        return passed(step, name, "{} active (reinstated at {}, log {} entry {})", what, last.time, last.log,
                      last.index)
    then = "active"
    later: StatusEvent | None = None
    for e in events:
        if e.time <= at:
            then = e.status
        elif later is None and e.status != "active":
            later = e
    if then == "revoked":
        return failed(step, name, TOTAL_FAILED, "REVOKED", "{} was revoked when the document was signed at {}",
                      what, at)
    if then == "suspended":
        return failed(step, name, INDETERMINATE, "SUSPENDED", "{} was suspended when the document was signed at {}",
                      what, at)
    if later is None or last.status == "active":
        return passed(step, name, "{} active at the signing time {} and now", what, at)
    if doc_poe is not None and doc_poe.time < later.time:
        return passed(step, name, "{} {} at {}, but the document existed by {}", what, later.status, later.time,
                      doc_poe.time)
    return failed(step, name, INDETERMINATE, "REVOKED_NO_POE", "{} {} at {}, after the claimed signing time {}, "
                  "with no proof the document existed before", what, later.status, later.time, at)


def governance_current(run: Run) -> None:
    """Step 8.0: the governance root the answer is judged under is the newest there is.

    An expired head (spec 5.4.3), or a newer root that final checkpoints name but no node served (spec
    4.3.5), means the verifier was kept from a newer root: TRY_LATER, on every path, early exits too.
    """
    if any(c.name == "governance-current" for c in run.checks):
        return
    add = run.checks.append
    expires = run.gov.expires
    if expires is not None and run.now >= expires:
        add(failed("8.0", "governance-current", INDETERMINATE, "TRY_LATER", "governance root v{} expired at {}: a"
                   " newer root is needed (sync from other nodes)", run.gov.version, expires))
    elif run.gov.withheld is not None:
        add(failed("8.0", "governance-current", INDETERMINATE, "TRY_LATER", "final checkpoints name governance root"
                   " v{}, which no node served; judged under v{} (a node may be withholding it: sync from others)",
                   run.gov.withheld, run.gov.version))


def single_history(run: Run) -> None:
    """Step 8.1: the ledger the answer rests on is one history.

    Evidence of two (a split view, an equivocating root) means more than ``f`` members colluded: no answer
    from that ledger holds, whatever the other checks found, so this runs on every path, early exits too.
    """
    evidence = getattr(run.view, "evidence", ())
    if evidence and not any(c.name == "single-history" for c in run.checks):
        run.checks.append(failed("8.1", "single-history", INDETERMINATE, "EQUIVOCATION", "{} piece(s) of evidence"
                                 " that members showed two histories, first: {}", len(evidence), evidence[0]))


def freshness(run: Run) -> None:
    """Step 8: every log consulted has a final checkpoint no older than the policy allows."""
    limit = run.policy.max_age_seconds
    add = run.checks.append
    for log, state in run.logs.items():
        if log in run.gov.departed and state is not None:
            # A removed member's log is frozen (spec 7.4.2): its final state can never change, so its age
            # does not make the answer stale.
            add(passed("8", "freshness", "log {} final at size {}, frozen since {} left at governance root v{}", log,
                       state.checkpoint.size, log, run.gov.departed[log][0]))
            continue
        if state is None:
            add(failed("8", "freshness", INDETERMINATE, "TRY_LATER", "no final checkpoint of log {}", log))
        elif state.age_seconds is None or state.age_seconds > limit:
            add(failed("8", "freshness", INDETERMINATE, "TRY_LATER", "newest final checkpoint of log {} (size {}) "
                       "is {} s old, more than {} s", log, state.checkpoint.size, state.age_seconds, limit))
        else:
            add(passed("8", "freshness", "log {} final at size {}, {} s old", log, state.checkpoint.size,
                       state.age_seconds))
