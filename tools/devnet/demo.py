"""``make demo``: a cross-border certificate of origin, end to end, on a six-member local network.

Every step runs the real ``mekong`` command a person would type (shown
before it runs) against real node processes with real SQLite files, real
encrypted key files and real signatures, and checks the exit code the step
must give. The run exits 0 only if every step gave the expected result.

Steps: the six-member genesis ceremony; the devnet starts; Viet Nam registers
its certificate-of-origin issuer and gives it a key; Thailand recognises Viet
Nam's certificates of origin; the issuer issues a certificate of origin for a
rice shipment to Thailand and anchors it; a Thai importer verifies it
(TOTAL-PASSED); Viet Nam revokes it; the importer verifies again
(TOTAL-FAILED/REVOKED); one node is stopped and the network carries on; an
auditor replays the whole ledger from another node; the devnet stops.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from tools.devnet import network as devnet

PP_ENV = devnet.PASSPHRASE_ENV

COO_CLAIMS = {
    "type": "certificate-of-origin",
    "certificate_number": "VN-TH-2026-004711",
    "agreement": "ATIGA",
    "issuing_body": {"name": "Viet Nam Ministry of Industry and Trade, Export-Import Department", "country": "VN"},
    "exporting_country": "VN",
    "importing_country": "TH",
    "exporter": {"name": "Mekong Delta Rice Export JSC", "country": "VN", "id": "0312345678"},
    "consignee": {"name": "Bangkok Fine Foods PCL", "country": "TH"},
    "items": [
        {"hs_code": "100630", "description": "Jasmine rice, milled, 5% broken", "origin_criterion": "WO",
         "quantity": {"value": "24000", "unit": "KGM"}, "fob_value": {"amount": 1392000, "currency": "USD"}},
    ],
    "invoice_number": "MDR-INV-2026-0815",
    "invoice_date": "2026-11-20",
    "document_digest": {"alg": "sha-256",
                        "value": "9b1c0e6a4f3d2b1a0c9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b"},
}


class Demo:
    """Runs the steps, printing each as a person would follow it."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.env = dict(os.environ)
        self.env.setdefault(PP_ENV, devnet.DEFAULT_PASSPHRASE)
        self.step_no = 0
        self.failures: list[str] = []

    def step(self, title: str) -> None:
        self.step_no += 1
        print(f"\n== Step {self.step_no}: {title}", flush=True)

    def say(self, text: str) -> None:
        print(textwrap.fill(text, width=100, initial_indent="   ", subsequent_indent="   "), flush=True)

    def mekong(self, *args: str, expect: int = 0, show: bool = True) -> str:
        """Run ``mekong ARGS``, print the command and its output, check the exit code."""
        shown = " ".join(shlex.quote(a) for a in args)
        print(f"   $ mekong {shown}", flush=True)
        # Shown: one stream, so that progress and warnings (stderr) appear where they happened.
        proc = subprocess.run([sys.executable, "-m", "tools.cli", *args], check=False, cwd=self.dir, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT if show else subprocess.PIPE,
                              text=True, timeout=300)
        out = (proc.stdout + (proc.stderr or "")).rstrip()
        if show and out:
            print(textwrap.indent(out, "     "), flush=True)
        if proc.returncode != expect:
            msg = f"step {self.step_no}: 'mekong {shown}' exited {proc.returncode}, expected {expect}"
            print(f"   !! {msg}", flush=True)
            self.failures.append(msg)
        else:
            print(f"   -> exit {proc.returncode}, as expected", flush=True)
        return proc.stdout

    def check(self, ok: bool, what: str) -> None:
        if ok:
            print(f"   -> {what}: yes", flush=True)
        else:
            print(f"   !! {what}: NO", flush=True)
            self.failures.append(f"step {self.step_no}: {what}")


def run(workdir: Path, base_port: int) -> int:
    d = Demo(workdir)
    net_dir = workdir / "devnet"
    d.step("the genesis ceremony of the six GMS members")
    d.say("Each member agency generates its own admin key and node key (encrypted key files). A draft genesis "
          "root lists the members, their public keys and endpoints, quorum and threshold; every founder signs "
          "it with its own admin key, and the signatures are assembled and checked against every rule.")
    net = devnet.create_devnet(net_dir, base_port=base_port)
    root = json.loads((net_dir / devnet.MANIFEST).read_text())
    print(f"   members: {', '.join(m['id'] for m in root['members'])}")
    print(f"   genesis root hash, pinned by every node and every verifier: {net.genesis_hash.hex()}")
    pin = net.genesis_hash.hex()
    genesis = str(net.genesis)
    common_pp = ["--passphrase-env", PP_ENV]

    d.step("the devnet starts: six member nodes, each its own process and SQLite database")
    devnet.start(net)
    for m in net.members:
        print(f"   {m.id}  {m.url}")
    vn, th = net.member("VN"), net.member("TH")
    d.mekong("node", "status", "--node", vn.url)

    d.step("Viet Nam registers its certificate-of-origin issuer and gives it a signing key")
    d.mekong("issuer", "register", "VN/moit-coo", "--name", "VN MOIT certificate of origin issuer",
             "--document-type", "certificate-of-origin", "--loa", "high", "--jurisdiction", "VN",
             "--node", vn.url, "--key", str(vn.admin_key), *common_pp)
    d.mekong("keys", "generate", "--out", "vn-coo-issuer.key", "--label", "VN MOIT CoO issuer 2026",
             "--kdf", "interactive", *common_pp)
    d.mekong("issuer", "add-key", "VN/moit-coo", "--issuer-key", "vn-coo-issuer.key", "--node", vn.url,
             "--key", str(vn.admin_key), *common_pp)

    d.step("Thailand recognises Viet Nam's certificates of origin at level of assurance 'substantial' or higher")
    d.mekong("policy", "set", "--member", "TH", "--recognise", "VN:certificate-of-origin:substantial",
             "--node", th.url, "--key", str(th.admin_key), *common_pp)

    d.step("the issuer issues a certificate of origin for a rice shipment to Thailand and anchors it")
    (workdir / "coo-claims.json").write_text(json.dumps(COO_CLAIMS, indent=2))
    d.mekong("credential", "issue", "--profile", "certificate-of-origin", "--claims", "coo-claims.json",
             "--issuer", "VN/moit-coo", "--key", "vn-coo-issuer.key", "--out", "coo.cbor",
             "--exp", str(int(time.time()) + 180 * 86400), *common_pp)
    d.mekong("credential", "anchor", "coo.cbor", "--node", vn.url, "--key", "vn-coo-issuer.key", *common_pp)

    d.step("a Thai importer verifies the certificate the light way, trusting no node: state proofs against a"
           " final checkpoint's state root")
    verify_args = ["verify", "coo.cbor", "--node", th.url, "--as-member", "TH", "--pin", pin,
                   "--replica", "importer-cache"]
    d.mekong(*verify_args, expect=0)

    d.step("the exporter attaches a proof bundle; a border post with no network verifies it offline")
    d.mekong("credential", "bundle", "coo.cbor", "--node", vn.url, "--as-member", "TH", "--pin", pin,
             "--replica", "exporter-cache", "--out", "coo.bundle", expect=0)
    d.mekong("verify", "coo.cbor", "--bundle", "coo.bundle", "--offline", "--as-member", "TH", "--pin", pin,
             "--replica", "border-post", expect=0)

    d.step("Viet Nam revokes the certificate (the shipment was re-routed)")
    d.mekong("credential", "revoke", "coo.cbor", "--reason", "consignment re-routed; certificate replaced",
             "--node", vn.url, "--key", "vn-coo-issuer.key", *common_pp)

    d.step("the importer verifies again: the revocation is on the ledger")
    out = d.mekong(*verify_args, "--json", expect=1, show=False)
    try:
        report = json.loads(out)
        print(f"     indication: {report.get('indication')}, sub-indication: {report.get('sub_indication')}")
        d.check(report.get("sub_indication") == "REVOKED", "TOTAL-FAILED with sub-indication REVOKED")
    except ValueError:
        d.check(False, "the verify report is JSON")

    d.step("Myanmar's node stops; the network carries on (quorum is 4 of 6)")
    devnet.stop_member(net, "MM")
    d.check(devnet.running(net.member("MM")) is None, "MM's node is down")
    d.say("Viet Nam issues and anchors a second certificate while MM is down; it still becomes final.")
    second = dict(COO_CLAIMS, certificate_number="VN-TH-2026-004712")
    (workdir / "coo2-claims.json").write_text(json.dumps(second, indent=2))
    d.mekong("credential", "issue", "--profile", "certificate-of-origin", "--claims", "coo2-claims.json",
             "--issuer", "VN/moit-coo", "--key", "vn-coo-issuer.key", "--out", "coo2.cbor", *common_pp)
    d.mekong("credential", "anchor", "coo2.cbor", "--node", vn.url, "--key", "vn-coo-issuer.key", *common_pp)
    d.say("A bank checks the second certificate against a full local replica (synced and replayed).")
    d.mekong("verify", "coo2.cbor", "--full", "--node", th.url, "--as-member", "TH", "--genesis", genesis,
             "--pin", pin, "--replica", "bank-replica", expect=0)

    d.step("an auditor replays the whole ledger from Cambodia's node")
    d.mekong("audit", "replay", "--node", net.member("KH").url, "--genesis", genesis, "--pin", pin, expect=0)

    d.step("the devnet stops")
    stopped = devnet.stop(net)
    print(f"   stopped: {', '.join(stopped)}")

    print()
    if d.failures:
        print(f"DEMO FAILED: {len(d.failures)} step(s) did not give the expected result:")
        for f in d.failures:
            print(f"  - {f}")
        return 1
    print(f"DEMO PASSED: all {d.step_no} steps gave the expected result.")
    return 0


def main() -> int:
    """Run the demo in a fresh temporary directory (kept with ``--keep``)."""
    keep = "--keep" in sys.argv
    base_port = int(os.environ.get("MEKONG_DEMO_BASE_PORT", "7301"))
    workdir = Path(tempfile.mkdtemp(prefix="mekong-demo-"))
    print(f"Mekong Trust Ledger demo, working in {workdir}")
    net = None
    try:
        code = run(workdir, base_port)
    finally:
        if (workdir / "devnet" / devnet.MANIFEST).exists():
            net = devnet.Devnet.load(workdir / "devnet")
            devnet.stop(net)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
