"""An issuer judged at the signing time as well as now, on real node processes and the real CLI (check 4.7).

The attack of the issue: an issuer's member suspends it; the issuer signs a credential anyway while
suspended; once reinstated, it anchors the credential, and a verifier that only looks at the issuer's
current status says TOTAL-PASSED.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from node import keystore
from tools.devnet import network as dn

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
COO_CLAIMS = REPO / "tests" / "tools" / "coo.json"


def _mekong(cwd: Path, *args: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEKONG_")}
    env[dn.PASSPHRASE_ENV] = dn.passphrase().decode()
    env["MEKONG_REPLICA"] = str(cwd / "replica")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "tools.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _ok(cwd: Path, *args: object) -> None:
    r = _mekong(cwd, *args)
    assert r.returncode == 0, f"mekong {' '.join(map(str, args))}\nexit {r.returncode}\n{r.stdout}\n{r.stderr}"


def test_a_credential_signed_while_suspended_does_not_pass_after_reinstatement(net: Net, tmp_path: Path) -> None:
    issuer, key, entries = net.register_issuer("VN", "coo")
    net.wait_final("VN", net.submit("VN", entries)["size"])
    pp = ("--passphrase-env", dn.PASSPHRASE_ENV)
    keys = {"issuer.key": key, "vn-admin.key": net.admin_key("VN"), "th-admin.key": net.admin_key("TH")}
    for name, k in keys.items():
        keystore.write_key_file(tmp_path / name, k, dn.passphrase(), name, opslimit=keystore.OPSLIMIT_MIN,
                                memlimit=keystore.MEMLIMIT_MIN)
    vn = ("--node", net.url("VN"), "--key", "vn-admin.key", *pp)
    _ok(tmp_path, "policy", "set", "--member", "TH", "--recognise", "VN:certificate-of-origin:substantial",
        "--node", net.url("TH"), "--key", "th-admin.key", *pp)
    _ok(tmp_path, "issuer", "update", issuer, "--status", "suspended", "--reason", "audit", *vn)
    _ok(tmp_path, "credential", "issue", "--profile", "certificate-of-origin", "--claims", COO_CLAIMS, "--issuer",
        issuer, "--key", "issuer.key", "--out", "coo.cbor", "--exp", "2100-01-01", *pp)
    time.sleep(1.1)  # the reinstatement's author time is after the credential's signing time
    _ok(tmp_path, "issuer", "update", issuer, "--status", "active", "--reason", "audit closed", *vn)
    _ok(tmp_path, "credential", "anchor", "coo.cbor", "--node", net.url("VN"), "--key", "issuer.key", *pp)
    r = _mekong(tmp_path, "verify", "coo.cbor", "--node", net.url("TH"), "--as-member", "TH", "--genesis",
                net.devnet.genesis, "--pin", net.genesis.root_hash.hex(), "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert (report["indication"], report["sub_indication"]) == ("INDETERMINATE", "CHAIN_CONSTRAINTS_FAILURE")
    failed = {c["name"]: c for c in report["checks"] if c["outcome"] != "passed"}
    assert set(failed) == {"issuer-at-signing-time"}, failed
    assert "was suspended at the signing time" in failed["issuer-at-signing-time"]["detail"]
