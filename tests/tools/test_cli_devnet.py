"""``mekong`` as a user runs it: real subprocesses against one real four-member devnet.

One devnet (KH, LA, TH, VN; f = 1, quorum 3) is brought up for the module with
``mekong devnet up`` on loopback ports found free, and stopped in teardown
whatever happens. Every command runs as ``python -m tools.cli ...`` in a
temporary working directory, with the devnet's passphrase in
``MEKONG_DEVNET_PASSPHRASE``, exactly as ``make demo`` drives it. The tests
cover the verify, audit and devnet commands: what succeeds, and the errors a
user will hit (wrong passphrase, unknown member, node unreachable, malformed
credential, stale replica with ``--offline``) with their documented exit codes
(0 passed, 1 failed, 2 indeterminate, 3 usage, 4 tool errors).

The CliRunner tests next to this module cover the same commands in-process
against real nodes in-process (tests/tools/netfixture.py); these run every piece as its own process.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from node import keystore
from node.config import load_config
from tools.devnet import network as dn

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COO_CLAIMS = Path(__file__).parent / "coo.json"
PASSPHRASE = "cli devnet tests: not a real passphrase"
MEMBERS = ("KH", "LA", "TH", "VN")
ISSUER = "VN/moit-coo"

_STARTED: list[Path] = []


@atexit.register
def _stop_leftovers() -> None:  # a last resort should a module teardown never run
    for d in _STARTED:
        if (d / dn.MANIFEST).exists():
            dn.stop(dn.Devnet.load(d))


def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def shown(r: subprocess.CompletedProcess[str]) -> str:
    """A command's exit code and output, for assertion messages."""
    return f"exit {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}"


class Mekong:
    """Runs ``mekong ARGS`` as a subprocess in ``cwd`` with the devnet passphrase in the environment."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEKONG_")}
        env[dn.PASSPHRASE_ENV] = PASSPHRASE
        env["MEKONG_REPLICA"] = str(cwd / "default-replica")  # never the user's ~/.config
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.env = env

    def __call__(self, *args: object, env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tools.cli", *map(str, args)], cwd=self.cwd,
                              env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def ok(self, *args: object, **kw: Any) -> subprocess.CompletedProcess[str]:
        r = self(*args, **kw)
        assert r.returncode == 0, f"mekong {' '.join(map(str, args))}\n{shown(r)}"
        return r


def node_status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/status", timeout=5) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def wait_final(urls: list[str], log: str, size: int, timeout: float = 30.0) -> None:
    """Wait until every node in ``urls`` holds a final checkpoint of ``log`` of ``size`` or more."""
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                if (node_status(url)["logs"][log]["final_size"] or 0) >= size:
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert time.monotonic() < deadline, f"{url} never held log {log} final at size {size}"
            time.sleep(0.1)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-devnet")


@pytest.fixture(scope="module")
def mekong(workdir: Path) -> Mekong:
    return Mekong(workdir)


@pytest.fixture(scope="module")
def devnet(workdir: Path, mekong: Mekong) -> Iterator[dn.Devnet]:
    """A four-member devnet started with ``mekong devnet up``; every node is stopped at the end."""
    directory = workdir / "devnet"
    _STARTED.append(directory)
    base = dn.free_base_port(len(MEMBERS))
    try:
        r = mekong("devnet", "up", "--dir", "devnet", "--members", ",".join(MEMBERS), "--base-port", base)
        assert r.returncode == 0, shown(r)
        assert "genesis root hash (pin this):" in r.stdout and "devnet is up" in r.stdout
        net = dn.Devnet.load(directory)
        assert [m.url for m in net.members] == [f"http://127.0.0.1:{base + i}" for i in range(len(MEMBERS))]
        yield net
    finally:
        if (directory / dn.MANIFEST).exists():
            net = dn.Devnet.load(directory)
            for m in net.members:  # SIGTERM every node first so that they shut down together
                pid = dn.running(m)
                if pid is not None:
                    os.kill(pid, signal.SIGTERM)
            dn.stop(net)
        _STARTED.remove(directory)


@dataclass(frozen=True)
class Ledger:
    """The devnet after VN registered ISSUER with a key, TH recognised VN's certificates of origin,
    and ISSUER issued and anchored two certificates of origin."""

    net: dn.Devnet
    pin: str
    genesis: Path
    issuer_key: Path
    credential: Path  # stays valid
    to_revoke: Path  # for the revocation test

    def url(self, member: str) -> str:
        return self.net.member(member).url

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.net.members]

    def verify_args(self, credential: Path, replica: str, *nodes: str) -> list[object]:
        """``verify CREDENTIAL`` as a Thai importer, syncing ``replica`` from ``nodes`` (default TH)."""
        node_args = [a for n in (nodes or ("TH",)) for a in ("--node", self.url(n))]
        return ["verify", "--full", credential, *node_args, "--as-member", "TH", "--genesis", self.genesis, "--pin", self.pin,
                "--replica", replica]


@pytest.fixture(scope="module")
def ledger(devnet: dn.Devnet, mekong: Mekong, workdir: Path) -> Ledger:
    vn, th = devnet.member("VN"), devnet.member("TH")
    pp = ["--passphrase-env", dn.PASSPHRASE_ENV]
    mekong.ok("issuer", "register", ISSUER, "--name", "VN MOIT certificate of origin issuer", "--document-type",
              "certificate-of-origin", "--loa", "high", "--jurisdiction", "VN", "--node", vn.url,
              "--key", vn.admin_key, *pp)
    mekong.ok("keys", "generate", "--out", "issuer.key", "--label", "VN MOIT CoO 2026", "--kdf", "interactive", *pp)
    mekong.ok("issuer", "add-key", ISSUER, "--issuer-key", "issuer.key", "--node", vn.url, "--key", vn.admin_key, *pp)
    mekong.ok("policy", "set", "--member", "TH", "--recognise", "VN:certificate-of-origin:substantial",
              "--node", th.url, "--key", th.admin_key, *pp)
    for name in ("coo.cbor", "coo-2.cbor"):
        mekong.ok("credential", "issue", "--profile", "certificate-of-origin", "--claims", COO_CLAIMS,
                  "--issuer", ISSUER, "--key", "issuer.key", "--out", name, "--exp", "2100-01-01", *pp)
        mekong.ok("credential", "anchor", name, "--node", vn.url, "--key", "issuer.key", *pp)
    urls = [m.url for m in devnet.members]
    wait_final(urls, "VN", 4)  # the push of a final checkpoint to peers is asynchronous
    wait_final(urls, "TH", 1)
    return Ledger(devnet, devnet.genesis_hash.hex(), devnet.genesis, workdir / "issuer.key", workdir / "coo.cbor",
                  workdir / "coo-2.cbor")


@pytest.fixture(scope="module")
def synced_replica(ledger: Ledger, mekong: Mekong) -> str:
    """A replica synced once from TH, for tests that verify ``--offline``."""
    mekong.ok(*ledger.verify_args(ledger.credential, "synced-replica"))
    return "synced-replica"


# ---------------------------------------------------------------------------- devnet


def test_devnet_status_shows_every_member_up(devnet: dn.Devnet, mekong: Mekong) -> None:
    r = mekong.ok("devnet", "status", "--dir", "devnet", "--json")
    doc = json.loads(r.stdout)
    assert sorted(doc) == list(MEMBERS)
    for m in devnet.members:
        st = doc[m.id]
        assert st["url"] == m.url and isinstance(st["pid"], int) and st["pid"] == dn.running(m)
        assert st["status"]["member"] == m.id and st["status"]["network"] == devnet.network
        assert st["status"]["root_version"] == 1 and sorted(st["status"]["logs"]) == list(MEMBERS)
    text = mekong.ok("devnet", "status", "--dir", "devnet").stdout
    assert all(f"{m.id}  {m.url}  up (pid" in text for m in devnet.members), text


# ---------------------------------------------------------------------------- verify: success


def test_verify_passes_then_reuses_the_replica(ledger: Ledger, mekong: Mekong) -> None:
    r = mekong(*ledger.verify_args(ledger.credential, "importer-replica"), "--json")
    assert r.returncode == 0, shown(r)
    doc = json.loads(r.stdout)
    assert (doc["indication"], doc["sub_indication"], doc["exit_code"]) == ("TOTAL-PASSED", None, 0)
    assert doc["issuer"] == ISSUER and doc["as_member"] == "TH" and doc["offline"] is False
    assert doc["proof_of_existence"]["log"] == "VN"
    assert doc["sync"]["answered"] == [ledger.url("TH")] and doc["sync"]["evidence"] == []
    assert doc["replica"]["genesis_hash"] == ledger.pin and doc["replica"]["logs"]["VN"]["final_size"] >= 4
    # Later runs reuse the nodes and the pin the replica holds.
    r = mekong("verify", "--full", ledger.credential, "--as-member", "TH", "--replica", "importer-replica")
    assert r.returncode == 0, shown(r)
    assert r.stdout.startswith("TOTAL-PASSED") and f"synced now from {ledger.url('TH')}" in r.stdout


def test_revoked_credential_fails(ledger: Ledger, mekong: Mekong) -> None:
    verify = ledger.verify_args(ledger.to_revoke, "revocation-replica")
    r = mekong(*verify)
    assert r.returncode == 0, shown(r)
    size = node_status(ledger.url("VN"))["logs"]["VN"]["size"]
    mekong.ok("credential", "revoke", ledger.to_revoke, "--reason", "consignment re-routed", "--node",
              ledger.url("VN"), "--key", ledger.issuer_key, "--passphrase-env", dn.PASSPHRASE_ENV)
    wait_final([ledger.url("TH")], "VN", size + 1)
    r = mekong(*verify, "--json")
    assert r.returncode == 1, shown(r)
    doc = json.loads(r.stdout)
    assert (doc["indication"], doc["sub_indication"], doc["exit_code"]) == ("TOTAL-FAILED", "REVOKED", 1)
    status = [c for c in doc["checks"] if c["name"] == "credential-status"]
    assert status and status[0]["outcome"] != "passed" and "revoked" in status[0]["detail"].lower()
    # The other credential of the same issuer is untouched.
    assert mekong("verify", "--full", ledger.credential, "--as-member", "TH", "--replica", "revocation-replica").returncode == 0


# ---------------------------------------------------------------------------- audit


def test_audit_replay_from_a_node_and_of_a_database_copy(ledger: Ledger, mekong: Mekong, workdir: Path) -> None:
    r = mekong("audit", "replay", "--node", ledger.url("KH"), "--genesis", ledger.genesis, "--pin", ledger.pin)
    assert r.returncode == 0, shown(r)
    assert "OK: every stored byte checks out" in r.stdout and "PROBLEMS" not in r.stdout
    assert re.search(r"log VN: (\d+) of \1 entries verified", r.stdout), r.stdout
    # A node operator's backup, taken while the node runs (README: Backup).
    copy = workdir / "vn-backup.sqlite3"
    src = sqlite3.connect(load_config(ledger.net.member("VN").config).database_path)
    dst = sqlite3.connect(copy)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    r = mekong("audit", "replay", "--db", copy, "--genesis", ledger.genesis, "--pin", ledger.pin, "--json")
    assert r.returncode == 0, shown(r)
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["problems"] == [] and doc["entries_checked"] >= 5
    assert doc["logs"]["VN"]["verified"] == doc["logs"]["VN"]["size"] >= 4


def test_audit_compare_every_node(ledger: Ledger, mekong: Mekong) -> None:
    nodes = [a for u in ledger.urls for a in ("--node", u)]
    r = mekong("audit", "compare", *nodes, "--pin", ledger.pin, "--json")
    assert r.returncode == 0, shown(r)
    doc = json.loads(r.stdout)
    assert doc["nodes"] == ledger.urls and doc["unreachable"] == {}
    assert doc["split_views"] == [] and doc["problems"] == []
    assert {s["node"] for s in doc["logs"]["VN"]} == set(ledger.urls)
    assert all(s["final"] for s in doc["logs"]["VN"])
    r = mekong("audit", "compare", "--node", ledger.url("KH"), "--node", ledger.url("VN"))
    assert r.returncode == 0, shown(r)
    assert "OK: every node shows one consistent history of every log" in r.stdout


# ---------------------------------------------------------------------------- errors a user will hit


def _secrets(key_file: Path) -> list[str]:
    """Every spelling of a key file's private seed that must never be printed."""
    seed = bytes(keystore.load_signing_key(key_file, PASSPHRASE.encode()))
    return [seed.hex(), seed.hex().upper(), base64.b64encode(seed).decode(), base64.urlsafe_b64encode(seed).decode(),
            base64.b64encode(seed).decode().rstrip("="), PASSPHRASE]


@pytest.mark.parametrize(("env", "message"), [
    ({"WRONG_PP": "not the passphrase of this key"}, "wrong passphrase"),
    ({"WRONG_PP": ""}, "holds no passphrase"),
], ids=["wrong-passphrase", "empty-passphrase"])
def test_wrong_passphrase_is_a_tool_error_without_key_material(ledger: Ledger, mekong: Mekong, env: dict[str, str],
                                                                message: str) -> None:
    vn = ledger.net.member("VN")
    before = node_status(vn.url)["logs"]["VN"]["size"]
    r = mekong("issuer", "register", "VN/never-registered", "--name", "Nobody", "--document-type",
               "certificate-of-origin", "--jurisdiction", "VN", "--node", vn.url, "--key", vn.admin_key,
               "--passphrase-env", "WRONG_PP", env=env)
    assert r.returncode == 4, shown(r)
    assert "passphrase" in r.stderr and message in r.stderr, shown(r)
    assert "Traceback" not in r.stderr
    out = r.stdout + r.stderr
    for secret in _secrets(vn.admin_key):
        assert secret not in out
    if env["WRONG_PP"]:
        assert env["WRONG_PP"] not in out
    assert node_status(vn.url)["logs"]["VN"]["size"] == before  # nothing was submitted


def test_issuer_of_an_unknown_member_is_refused(ledger: Ledger, mekong: Mekong) -> None:
    vn = ledger.net.member("VN")
    r = mekong("issuer", "register", "ZZ/customs", "--name", "Nobody", "--document-type", "certificate-of-origin",
               "--jurisdiction", "ZZ", "--node", vn.url, "--key", vn.admin_key, "--passphrase-env", dn.PASSPHRASE_ENV)
    assert r.returncode == 4, shown(r)
    assert "refused" in r.stderr and "ZZ" in r.stderr and "Traceback" not in r.stderr
    # An issuer id of one member with --member of another is a usage error, caught before any key is opened.
    r = mekong("issuer", "register", "VN/other", "--member", "TH", "--name", "Other", "--document-type",
               "certificate-of-origin", "--jurisdiction", "VN", "--node", vn.url, "--key", vn.admin_key,
               "--passphrase-env", dn.PASSPHRASE_ENV)
    assert r.returncode == 3, shown(r)
    assert "belongs to member VN" in r.stderr


@pytest.mark.parametrize(("member", "message"), [
    ("ZZ", "ZZ is not a member"),
    ("Thailand", "is not a member id"),
], ids=["not-in-the-root", "not-a-member-id"])
def test_verify_as_an_unknown_member_is_a_usage_error(ledger: Ledger, mekong: Mekong, member: str,
                                                      message: str) -> None:
    r = mekong("verify", "--full", ledger.credential, "--node", ledger.url("TH"), "--as-member", member, "--pin", ledger.pin,
               "--replica", "unknown-member-replica")
    assert r.returncode == 3, shown(r)
    assert message in r.stderr and r.stdout == "", shown(r)


@pytest.mark.parametrize("command", ["verify-new-replica", "verify-synced-replica", "issuer-register",
                                     "audit-replay", "audit-compare"])
def test_node_unreachable(ledger: Ledger, mekong: Mekong, synced_replica: str, command: str) -> None:
    closed = closed_port_url()
    vn = ledger.net.member("VN")
    args: list[object] = {
        "verify-new-replica": ["verify", "--full", ledger.credential, "--node", closed, "--as-member", "TH", "--pin", ledger.pin,
                               "--replica", "never-synced"],
        "verify-synced-replica": ["verify", "--full", ledger.credential, "--node", closed, "--as-member", "TH",
                                  "--replica", synced_replica],
        "issuer-register": ["issuer", "register", "VN/unreachable", "--name", "X", "--document-type",
                            "certificate-of-origin", "--jurisdiction", "VN", "--node", closed, "--key", vn.admin_key,
                            "--passphrase-env", dn.PASSPHRASE_ENV],
        "audit-replay": ["audit", "replay", "--node", closed, "--genesis", ledger.genesis, "--pin", ledger.pin],
        "audit-compare": ["audit", "compare", "--node", ledger.url("KH"), "--node", closed],
    }[command]
    r = mekong(*args)
    assert r.returncode == 4, shown(r)
    assert f"{closed} unreachable" in r.stdout + r.stderr, shown(r)
    assert "Traceback" not in r.stderr
    if command == "verify-synced-replica":
        assert "add --offline" in r.stderr and "last synced" in r.stderr
    if command == "audit-compare":  # what did answer is still compared, and said to be only that
        assert "OK: every node that answered shows one consistent history" in r.stdout


def _malformed(credential: bytes) -> dict[str, bytes]:
    flipped = bytearray(credential)
    flipped[-5] ^= 0x01  # inside the Ed25519 signature, the last field of the COSE_Sign1
    return {
        "random-bytes": random.Random(5).randbytes(256),
        "text-file": b"this is not a credential\n",
        "empty": b"",
        "truncated": credential[: len(credential) // 3],
        "trailing-garbage": credential + b"\x00",
        "flipped-signature-bit": bytes(flipped),
    }


@pytest.mark.parametrize(("case", "sub_indication", "detail"), [
    pytest.param("random-bytes", "FORMAT_FAILURE", "CBOR", id="random-bytes"),
    pytest.param("text-file", "FORMAT_FAILURE", "not a COSE_Sign1 credential: it looks like text", id="text-file"),
    pytest.param("empty", "FORMAT_FAILURE", "it looks like an empty file", id="empty"),
    pytest.param("truncated", "FORMAT_FAILURE", "truncated input", id="truncated"),
    pytest.param("trailing-garbage", "FORMAT_FAILURE", "1 trailing bytes", id="trailing-garbage"),
    pytest.param("flipped-signature-bit", "SIG_CRYPTO_FAILURE", "signature does not verify",
                 id="flipped-signature-bit"),
])
def test_malformed_credential_is_total_failed(ledger: Ledger, mekong: Mekong, synced_replica: str, workdir: Path,
                                              case: str, sub_indication: str, detail: str) -> None:
    bad = workdir / f"malformed-{case}.cbor"
    bad.write_bytes(_malformed(ledger.credential.read_bytes())[case])
    r = mekong("verify", "--full", bad, "--offline", "--as-member", "TH", "--replica", synced_replica, "--json")
    assert r.returncode == 1, shown(r)
    doc = json.loads(r.stdout)
    assert (doc["indication"], doc["sub_indication"], doc["exit_code"]) == ("TOTAL-FAILED", sub_indication, 1)
    failed = [c for c in doc["checks"] if c["outcome"] != "passed"]
    assert failed and failed[0]["sub_indication"] == sub_indication and detail in failed[0]["detail"], failed
    if sub_indication == "FORMAT_FAILURE":
        assert failed[0]["name"] == "decode" and failed[0]["detail"].startswith("credential:")


def test_stale_replica_offline_is_try_later_with_its_age(ledger: Ledger, mekong: Mekong) -> None:
    mekong.ok(*ledger.verify_args(ledger.credential, "stale-replica"))
    time.sleep(2.2)
    r = mekong("verify", "--full", ledger.credential, "--offline", "--max-age", "1", "--as-member", "TH",
               "--replica", "stale-replica")
    assert r.returncode == 2, shown(r)
    assert r.stdout.startswith("INDETERMINATE / TRY_LATER"), shown(r)
    ages = [int(a) for a in re.findall(r"freshness: newest final checkpoint of log \w\w \(size \d+\) is (\d+) s old, "
                                       r"more than 1 s", r.stdout)]
    assert ages and min(ages) >= 2, r.stdout
    synced = re.search(r"OFFLINE: last synced \S+ \((\d+) s ago\)", r.stdout)
    assert synced and int(synced.group(1)) >= 2, r.stdout
    r = mekong("verify", "--full", ledger.credential, "--offline", "--max-age", "1", "--as-member", "TH",
               "--replica", "stale-replica", "--json")
    assert r.returncode == 2, shown(r)
    doc = json.loads(r.stdout)
    assert (doc["indication"], doc["sub_indication"], doc["exit_code"]) == ("INDETERMINATE", "TRY_LATER", 2)
    assert doc["offline"] is True and doc["sync"] is None and doc["replica"]["last_sync_age_seconds"] >= 2
    # The same replica under the default maximum age (a day) still passes, offline.
    r = mekong("verify", "--full", ledger.credential, "--offline", "--as-member", "TH", "--replica", "stale-replica")
    assert r.returncode == 0, shown(r)
    assert r.stdout.startswith("TOTAL-PASSED") and "OFFLINE: last synced" in r.stdout


# ---------------------------------------------------------------------------- devnet down, and up again


def test_devnet_down_then_up_keeps_the_ledger(ledger: Ledger, mekong: Mekong) -> None:
    net = ledger.net
    vn_size = node_status(ledger.url("VN"))["logs"]["VN"]["size"]
    try:
        r = mekong("devnet", "down", "--dir", "devnet")
        assert r.returncode == 0, shown(r)
        assert r.stdout.strip() == f"stopped {', '.join(MEMBERS)}"
        doc = json.loads(mekong.ok("devnet", "status", "--dir", "devnet", "--json").stdout)
        assert all(doc[m]["pid"] is None and doc[m]["status"] is None for m in MEMBERS), doc
        text = mekong.ok("devnet", "status", "--dir", "devnet").stdout
        assert all(f"{m.id}  {m.url}  down" in text for m in net.members), text
        r = mekong("devnet", "down", "--dir", "devnet")
        assert r.returncode == 0 and "nothing (no node was running)" in r.stdout, shown(r)
        # Up again on the same directory: no new ceremony, the same genesis, the data kept.
        r = mekong("devnet", "up", "--dir", "devnet")
        assert r.returncode == 0, shown(r)
        assert "genesis ceremony" not in r.stdout and "devnet is up" in r.stdout
        doc = json.loads(mekong.ok("devnet", "status", "--dir", "devnet", "--json").stdout)
        assert all(isinstance(doc[m]["pid"], int) and doc[m]["status"] for m in MEMBERS), doc
        assert doc["VN"]["status"]["logs"]["VN"]["size"] == vn_size
    finally:
        dn.start(net)  # whatever happened, leave the devnet running for any test after this one
    r = mekong("verify", "--full", ledger.credential, "--node", ledger.url("KH"), "--as-member", "TH", "--pin", ledger.pin,
               "--replica", "after-restart-replica")
    assert r.returncode == 0, shown(r)


# ---------------------------------------------------------------------------- the explorer, in a real browser

ARTIFACTS = Path(os.environ.get("MEKONG_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "build" / "test-artifacts"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Selenium (Debian's chromium and chromium-driver); skipped where absent."""
    webdriver = pytest.importorskip("selenium.webdriver")
    driver_path, chrome = "/usr/bin/chromedriver", "/usr/bin/chromium"
    if not (os.path.exists(driver_path) and os.path.exists(chrome)):
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"explorer-{name}.png"))


def _text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def test_explorer_pages_and_links(ledger: Ledger, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    browser.get(ledger.url("KH") + "/")
    _shot(browser, "network")
    logs = _text(browser, "#logs")
    assert "VN" in logs and "TH" in logs and "root version" in browser.page_source
    browser.find_element(By.LINK_TEXT, "VN").click()
    _shot(browser, "log-vn")
    assert "credential.anchor" in _text(browser, "#entries") and "issuer.register" in _text(browser, "#entries")
    assert "governance 1" in _text(browser, "#checkpoints") and "state " in _text(browser, "#checkpoints")
    browser.find_element(By.PARTIAL_LINK_TEXT, f"issuer {ISSUER}").click()
    _shot(browser, "issuer")
    assert _text(browser, "#issuer-status") == "active" and "certificate-of-origin" in _text(browser, "#history")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#keys tr")) == 2  # header and the one key
    cti = json.loads(subprocess.run([sys.executable, "-m", "tools.cli", "credential", "show", str(ledger.credential),
                                     "--json"], capture_output=True, text=True, check=True).stdout)["cti"]
    field = browser.find_element(By.NAME, "cti")
    field.send_keys(cti)
    field.submit()
    _shot(browser, "issuer-credential")
    assert "No anchor or status entry" not in _text(browser, "#credential-status")
    browser.find_element(By.LINK_TEXT, "Evidence").click()
    _shot(browser, "evidence")
    assert browser.find_element(By.ID, "evidence")


def test_explorer_checks_an_uploaded_credential(ledger: Ledger, browser: Any, workdir: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    browser.get(ledger.url("LA") + "/explorer/verify")
    browser.find_element(By.ID, "credential").send_keys(str(ledger.credential.resolve()))
    Select(browser.find_element(By.NAME, "as_member")).select_by_visible_text("TH")
    browser.find_element(By.ID, "check").click()
    _shot(browser, "verify-passed")
    assert _text(browser, "#verdict").startswith("TOTAL-PASSED"), _text(browser, "#report")
    assert "proof-of-existence" in _text(browser, "#report")
    bad = workdir / "not-a-credential.json"
    bad.write_text('{"type": "certificate-of-origin"}')
    browser.get(ledger.url("LA") + "/explorer/verify")
    browser.find_element(By.ID, "credential").send_keys(str(bad))
    browser.find_element(By.ID, "check").click()
    _shot(browser, "verify-format-failure")
    assert "FORMAT_FAILURE" in _text(browser, "#verdict") and "looks like JSON" in _text(browser, "#report")
