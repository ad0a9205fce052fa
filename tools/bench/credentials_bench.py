"""Credentials benchmark: full ``verify()`` per second against raw Ed25519 verification, same run, one core.

Run with ``make bench`` or ``python -m tools.bench credentials``. Setup: a
sandbox network (:class:`credentials.sandbox.Sandbox`: real signed entries in
a real :class:`ledger.registry.RegistryState`, real cosigned checkpoints)
with two issuers, a recognition policy, and ``CREDENTIALS`` distinct
credentials, every one anchored and final. Everything runs in one thread, and
times are the thread's CPU time (``time.thread_time``), so other processes on
a shared machine skew the figures less. Figures, in one run:

1. baseline: raw pynacl Ed25519 verifications per second of the same
   credentials' Sig_structure bytes (``VerifyKey(pub).verify(msg, sig)``,
   the call :func:`ledger.keys.verify_ed25519` makes);
2. credentials verified per second by :func:`credentials.verify.verify`
   against a :class:`credentials.view.RegistryView` (all 8 steps, report
   included, TOTAL-PASSED each time), for a small profile (``legal-entity``)
   and a large one (``certificate-of-origin`` with 3 items), and the ratio of
   each to the baseline (target: the mix at least 0.8).

The baseline and the verifier are timed in alternating chunks of 100 and each
figure is the best of several rounds, because the machines are shared and noisy.
"""

from __future__ import annotations

import time
from typing import Any

import nacl.signing

from credentials.fields import Digest, Money, Party, Quantity
from credentials.issue import issue_credential
from credentials.profiles import CertificateOfOrigin, CooItem, LegalEntity
from credentials.report import TOTAL_PASSED
from credentials.sandbox import Sandbox
from credentials.verify import VerificationPolicy, verify
from ledger import cose
from ledger.keys import key_id

CREDENTIALS = 1_000
ROUNDS = 5
TARGET = 0.8
_T0 = 1_700_000_000


def _profiles(i: int) -> tuple[LegalEntity, CertificateOfOrigin]:
    le = LegalEntity(f"03{i:08d}", "tax-id", f"Mekong Trading Co. {i}", "VN", "active", "substantial")
    items = tuple(CooItem(hs, f"Goods line {n}", "WO", Quantity(f"{1000 + n}.5", "KGM"), Money(100000 * (n + 1), "USD"))
                  for n, hs in enumerate(("100630", "090111", "400122")))
    coo = CertificateOfOrigin(f"VN-TH-2024-{i:06d}", "ATIGA", Party("VCCI", "VN"), "VN", "TH",
                              Party(f"Exporter {i}", "VN", f"03{i:08d}"), Party("Bangkok Foods PCL", "TH"), items,
                              f"INV-{i}", "2024-03-01", Digest("sha-256", i.to_bytes(32, "big")))
    return le, coo


def _setup() -> tuple[Any, dict[str, list[bytes]], list[tuple[bytes, bytes, bytes]]]:
    sb = Sandbox(seed="bench")
    t = _T0 + 10
    sb.register_issuer("VN/customs", ["certificate-of-origin"], "high", t)
    sb.register_issuer("VN/business-registry", ["legal-entity"], "substantial", t)
    keys = {"VN/customs": sb.add_key("VN/customs", t), "VN/business-registry": sb.add_key("VN/business-registry", t)}
    sb.set_policy("TH", [("VN", ["*"], "substantial")], t)
    creds: dict[str, list[bytes]] = {"legal-entity": [], "certificate-of-origin": []}
    for i in range(CREDENTIALS):
        le, coo = _profiles(i)
        for issuer, profile in (("VN/business-registry", le), ("VN/customs", coo)):
            cred = issue_credential(profile, issuer, keys[issuer], t + 1 + i)
            creds[profile.TYPE].append(cred)
            sb.anchor(issuer, keys[issuer], cred, t + 1 + i)
    sb.finalize_all(_T0 + 5000)
    by_kid = {key_id(bytes(k.verify_key)): bytes(k.verify_key) for k in keys.values()}
    raw_jobs = []
    for cred in creds["legal-entity"] + creds["certificate-of-origin"]:
        s = cose.UnverifiedSign1.decode(cred)
        raw_jobs.append((by_kid[s.kid], s.to_be_signed(), s.signature))  # type: ignore[index]
    return sb.view(), creds, raw_jobs


def _chunked(fn: Any, items: list[Any], size: int = 100) -> list[float]:
    """CPU seconds of ``fn`` over each chunk of ``items``."""
    out = []
    for at in range(0, len(items), size):
        chunk = items[at:at + size]
        started = time.thread_time()
        for item in chunk:
            fn(item)
        out.append(time.thread_time() - started)
    return out


def run(report: Any) -> None:
    """Measure and report (see the module docstring)."""
    view, creds, raw_jobs = _setup()
    policy = VerificationPolicy("TH", max_age_seconds=10 ** 9)
    now = _T0 + 6000
    for cred in creds["legal-entity"][:3] + creds["certificate-of-origin"][:3]:
        r = verify(cred, view, policy, now)
        if r.indication != TOTAL_PASSED:
            raise RuntimeError("benchmark credential did not pass:\n" + r.render_text())

    def raw(job: tuple[bytes, bytes, bytes]) -> None:
        nacl.signing.VerifyKey(job[0]).verify(job[1], job[2])

    def full(cred: bytes) -> None:
        verify(cred, view, policy, now)

    mix = [c for pair in zip(creds["legal-entity"], creds["certificate-of-origin"]) for c in pair]
    sets = {"legal-entity": creds["legal-entity"], "certificate-of-origin": creds["certificate-of-origin"],
            "mix": mix}
    # Each set's baseline verifies the Sig_structures of that set's own credentials, in the same order
    # (a certificate of origin signs about 900 bytes, a legal entity about 240).
    le_jobs, coo_jobs = raw_jobs[:CREDENTIALS], raw_jobs[CREDENTIALS:]
    jobs = {"legal-entity": le_jobs, "certificate-of-origin": coo_jobs,
            "mix": [j for pair in zip(le_jobs, coo_jobs) for j in pair]}
    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for name, items in sets.items():
            # Alternate chunks of the baseline and of the verifier, so both see the same machine.
            raw_times, full_times = [], []
            for at in range(0, len(items), 100):
                raw_times += _chunked(raw, jobs[name][at:at + 100])
                full_times += _chunked(full, items[at:at + 100])
            raw_rate = len(items) / sum(raw_times)
            full_rate = len(items) / sum(full_times)
            best["raw"] = max(best.get("raw", 0.0), raw_rate)
            if full_rate / raw_rate > best.get(name + " ratio", 0.0):
                best[name], best[name + " ratio"] = full_rate, full_rate / raw_rate
    report.figure("raw Ed25519 verifications (baseline)", best["raw"], "per s", "one thread, CPU time")
    for name in sets:
        report.figure(f"credentials verified, {name}", best[name], "per s", f"ratio {best[name + ' ratio']:.2f}")
    ratio = best["mix ratio"]
    report.target("credential verify/s >= 0.8 x raw Ed25519 verify/s", ratio >= TARGET,
                  f"ratio {ratio:.2f} on the mix of {len(mix)} distinct anchored credentials")
