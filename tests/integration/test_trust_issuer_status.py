"""An issuer judged at the signing time as well as now, on real node processes and the real CLI (check 4.7).

The attack of the issue: an issuer's member suspends it; the issuer signs a credential anyway while
suspended; once reinstated, it anchors the credential, and a verifier that only looks at the issuer's
current status says TOTAL-PASSED.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tools.devnet import network as dn

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
COO_CLAIMS = REPO / "tests" / "tools" / "coo.json"


def test_a_credential_signed_while_suspended_does_not_pass_after_reinstatement(net: Net, tmp_path: Path) -> None:
    issuer, key, entries = net.register_issuer("VN", "coo")
    net.wait_final("VN", net.submit("VN", entries)["size"])
    pp = ("--passphrase-env", dn.PASSPHRASE_ENV)
    net.write_keys(tmp_path, {"issuer.key": key, "vn-admin.key": net.admin_key("VN"),
                              "th-admin.key": net.admin_key("TH")})
    vn = ("--node", net.url("VN"), "--key", "vn-admin.key", *pp)
    net.mekong_ok(tmp_path, "policy", "set", "--member", "TH", "--recognise", "VN:certificate-of-origin:substantial",
        "--node", net.url("TH"), "--key", "th-admin.key", *pp)
    net.mekong_ok(tmp_path, "issuer", "update", issuer, "--status", "suspended", "--reason", "audit", *vn)
    net.mekong_ok(tmp_path, "credential", "issue", "--profile", "certificate-of-origin", "--claims", COO_CLAIMS, "--issuer",
        issuer, "--key", "issuer.key", "--out", "coo.cbor", "--exp", "2100-01-01", *pp)
    time.sleep(1.1)  # the reinstatement's author time is after the credential's signing time
    net.mekong_ok(tmp_path, "issuer", "update", issuer, "--status", "active", "--reason", "audit closed", *vn)
    net.mekong_ok(tmp_path, "credential", "anchor", "coo.cbor", "--node", net.url("VN"), "--key", "issuer.key", *pp)
    r = net.mekong(tmp_path, "verify", "coo.cbor", "--node", net.url("TH"), "--as-member", "TH", "--genesis",
                net.devnet.genesis, "--pin", net.genesis.root_hash.hex(), "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert (report["indication"], report["sub_indication"]) == ("INDETERMINATE", "CHAIN_CONSTRAINTS_FAILURE")
    failed = {c["name"]: c for c in report["checks"] if c["outcome"] != "passed"}
    assert set(failed) == {"issuer-at-signing-time"}, failed
    assert "was suspended at the signing time" in failed["issuer-at-signing-time"]["detail"]
