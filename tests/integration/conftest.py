"""Fixtures for integration tests: real node processes on loopback, each with its own SQLite file.

Every test module gets a :func:`devnets` factory. It creates devnets with
:func:`tools.devnet.network.create_devnet` (real keys, a real genesis ceremony) in
pytest's temporary directories, on loopback ports found free at that moment,
and stops every node it started when the module ends, whether the tests
passed or not (and again at interpreter exit, should the teardown be skipped).

:class:`Net` wraps one devnet with the few HTTP calls the tests make, using
only the standard library as a client, and the waits the tests need
("until every node holds a final checkpoint of VN of size 52").
"""

from __future__ import annotations

import atexit
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from ledger import cbor
from ledger.bodies import CredentialAnchor, IssuerKeyAdd, IssuerRegister
from ledger.checkpoint import Checkpoint, CosignatureVerifier, log_origin, open_checkpoint, witness_name
from ledger.entries import make_entry
from ledger.governance import GovernanceChain
from ledger.note import NoteVerifier
from ledger.roots import SignedRoot
from node import keystore
from node.config import Limits, load_config
from tools.devnet import network as dn

REPO = Path(__file__).resolve().parents[2]
#: Four members: quorum and threshold 3 with f = 1, so any one node may be down.
FOUR = {"KH": "Cambodia customs", "LA": "Lao customs", "TH": "Thai customs", "VN": "Viet Nam customs"}
#: Generous rate limits (tests submit hundreds of entries at once) and a quick sync loop.
TEST_LIMITS = Limits(submitter_entries_per_second=1_000_000, submitter_burst=10_000_000,
                     sync_interval_ms=400, witness_request_timeout_ms=3000, witness_quorum_timeout_ms=10_000)

_RUNNING: list[dn.Devnet] = []


@atexit.register
def _stop_leftovers() -> None:  # a last resort if a module teardown never ran
    for net in _RUNNING:
        dn.stop(net)


class Response:
    """An HTTP answer: status, headers (lower-case names), body bytes."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def __repr__(self) -> str:
        return f"<{self.status} {self.content_type} {self.body[:300]!r}>"


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 30.0) -> Response:
    """One HTTP request with http.client; never raises for an HTTP status."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


class Net:
    """One running devnet as the tests see it."""

    def __init__(self, net: dn.Devnet) -> None:
        self.devnet = net
        self.ids = [m.id for m in net.members]
        self._keys: dict[tuple[str, str], nacl.signing.SigningKey] = {}
        self._genesis = SignedRoot.from_cbor(net.genesis.read_bytes())
        self._times: dict[str, int] = {}

    # -------------------------------------------------------------- processes

    @property
    def network(self) -> str:
        return self.devnet.network

    @property
    def genesis(self) -> SignedRoot:
        return self._genesis

    def url(self, member: str) -> str:
        return self.devnet.member(member).url

    def start(self, *members: str) -> None:
        dn.start(self.devnet, list(members) or None, timeout=60)

    def stop(self, member: str, *, kill: bool = False) -> None:
        assert dn.stop_member(self.devnet, member, kill=kill), f"{member} was not running"

    def running(self, member: str) -> bool:
        return dn.running(self.devnet.member(member)) is not None

    def node_log(self, member: str) -> str:
        path = self.devnet.member(member).log
        return path.read_text(errors="replace") if path.exists() else ""

    def database(self, member: str) -> Path:
        return load_config(self.devnet.member(member).config).database_path

    def tails(self) -> str:
        """The end of every node's log, for assertion messages."""
        return "\n".join(f"--- {m}\n{self.node_log(m)[-1500:]}" for m in self.ids)

    # -------------------------------------------------------------- keys and entries

    def admin_key(self, member: str) -> nacl.signing.SigningKey:
        return self._key(member, "admin")

    def node_key(self, member: str) -> nacl.signing.SigningKey:
        return self._key(member, "node")

    def _key(self, member: str, role: str) -> nacl.signing.SigningKey:
        if (member, role) not in self._keys:
            m = self.devnet.member(member)
            self._keys[(member, role)] = dn.load_key(m.admin_key if role == "admin" else m.node_key)
        return self._keys[(member, role)]

    def now(self, member: str) -> int:
        """An author time for ``member``'s log that never goes backwards (spec 6.3.3)."""
        t = max(int(time.time()), self._times.get(member, 0))
        self._times[member] = t
        return t

    def register_issuer(self, member: str, name: str, document_types: tuple[str, ...] = ("certificate-of-origin",),
                        ) -> tuple[str, nacl.signing.SigningKey, list[bytes]]:
        """Entries registering issuer ``member/name`` with a fresh key: (issuer id, issuer key, entries)."""
        issuer = f"{member}/{name}"
        key = nacl.signing.SigningKey.generate()
        now = self.now(member)
        admin = self.admin_key(member)
        entries = [
            make_entry(member, "issuer.register", now, IssuerRegister(issuer, f"{name} issuer", document_types,
                                                                      "high", member), admin),
            make_entry(member, "issuer.key.add", now, IssuerKeyAdd(issuer, bytes(key.verify_key), now - 60), admin),
        ]
        return issuer, key, entries

    def anchors(self, member: str, issuer: str, key: nacl.signing.SigningKey, count: int, tag: str = "",
                ) -> list[bytes]:
        """``count`` credential.anchor entries with distinct digests."""
        now = self.now(member)
        return [make_entry(member, "credential.anchor", now, CredentialAnchor(
            issuer, hashlib.sha256(f"{issuer} {tag} credential {i}".encode()).digest()), key) for i in range(count)]

    # -------------------------------------------------------------- HTTP

    def request(self, member: str, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, **kw: Any) -> Response:
        return request(self.url(member), method, path, body, headers, **kw)

    def get(self, member: str, path: str, **kw: Any) -> Response:
        return request(self.url(member), "GET", path, **kw)

    def post(self, member: str, path: str, body: bytes, content_type: str = "application/cbor",
             headers: dict[str, str] | None = None, **kw: Any) -> Response:
        return request(self.url(member), "POST", path, body, {"Content-Type": content_type, **(headers or {})}, **kw)

    def submit(self, member: str, entries: list[bytes], *, wait_final: bool = True) -> dict[str, Any]:
        """POST entries to ``member``'s own log; the JSON answer (asserts 200)."""
        path = f"/logs/{member}/entries" + ("?wait=final" if wait_final else "")
        resp = self.post(member, path, cbor.encode(entries))
        assert resp.status == 200, f"submission to {member} refused: {resp}"
        answer: dict[str, Any] = resp.json()
        if wait_final:
            assert answer["final_size"] is not None and answer["final_size"] >= answer["size"], answer
        return answer

    def status(self, member: str) -> dict[str, Any]:
        resp = self.get(member, "/status", timeout=5)
        assert resp.status == 200, resp
        result: dict[str, Any] = resp.json()
        return result

    def final_size(self, node: str, log: str) -> int | None:
        size: int | None = self.status(node)["logs"][log]["final_size"]
        return size

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting until {what}\n{self.tails()}")
            time.sleep(0.1)

    def wait_final(self, log: str, size: int, nodes: list[str] | None = None, timeout: float = 20.0) -> None:
        """Wait until every node in ``nodes`` (default: all) holds a final checkpoint of ``log`` of ``size``+."""
        for node in nodes or self.ids:
            self.wait_until(f"{node} holds log {log} final at size {size}",
                            lambda node=node: (self.final_size(node, log) or 0) >= size, timeout)  # type: ignore[misc]

    def wait_sizes_equal(self, log: str, size: int, timeout: float = 20.0) -> None:
        """Wait until every node has exactly ``size`` final entries of ``log``."""
        for node in self.ids:
            self.wait_until(f"{node} holds log {log} final at exactly {size}",
                            lambda node=node: self.final_size(node, log) == size, timeout)  # type: ignore[misc]

    # -------------------------------------------------------------- the real CLI

    def mekong(self, cwd: Path, *args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``mekong ARGS`` as a subprocess in ``cwd``: the devnet passphrase in the environment, a replica
        in ``cwd``, and never the user's own ``MEKONG_*`` settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEKONG_")}
        env[dn.PASSPHRASE_ENV] = dn.passphrase().decode()
        env["MEKONG_REPLICA"] = str(cwd / "replica")
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        return subprocess.run([sys.executable, "-m", "tools.cli", *map(str, args)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def mekong_ok(self, cwd: Path, *args: object) -> subprocess.CompletedProcess[str]:
        """:meth:`mekong`, asserting exit code 0 (the output is in the message otherwise)."""
        r = self.mekong(cwd, *args)
        assert r.returncode == 0, f"mekong {' '.join(map(str, args))}\nexit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def write_keys(self, directory: Path, keys: dict[str, nacl.signing.SigningKey]) -> None:
        """Each key as an encrypted key file ``directory/NAME`` under the devnet passphrase (fast KDF)."""
        for name, key in keys.items():
            keystore.write_key_file(directory / name, key, dn.passphrase(), name, opslimit=keystore.OPSLIMIT_MIN,
                                    memlimit=keystore.MEMLIMIT_MIN)

    def chain(self, node: str = "KH") -> GovernanceChain:
        """The governance chain ``node`` holds, verified from the pinned genesis."""
        current = self.get(node, "/governance/roots").json()["current"]
        chain = GovernanceChain(self.genesis, self.genesis.root_hash)
        for v in range(2, current + 1):
            chain.add(SignedRoot.from_cbor(self.get(node, f"/governance/roots/{v}").body))
        return chain

    # -------------------------------------------------------------- verifying what nodes serve

    def log_verifier(self, log: str) -> NoteVerifier:
        return NoteVerifier(log_origin(self.network, log), self.genesis.root.node_key_of(log))

    def cosigners(self) -> list[CosignatureVerifier]:
        return [CosignatureVerifier(witness_name(self.network, m.id), m.node_key) for m in self.genesis.root.members]

    def verified_checkpoint(self, node: str, log: str) -> tuple[Checkpoint, dict[str, int]]:
        """Fetch ``/logs/{log}/checkpoint`` from ``node`` and check it against the genesis keys and quorum."""
        resp = self.get(node, f"/logs/{log}/checkpoint")
        assert resp.status == 200, f"{node} serves no final checkpoint of {log}: {resp}"
        cp, cosigs = open_checkpoint(resp.body, self.log_verifier(log), self.cosigners())
        assert len(cosigs) >= self.genesis.root.quorum, f"{node}: {log} checkpoint has only {sorted(cosigs)}"
        return cp, cosigs


@pytest.fixture(scope="module")
def devnets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Net]]:
    """A factory of devnets for one test module; every node it started is stopped at the end.

    ``devnets(members=FOUR, start=True, limits=TEST_LIMITS)``: ``start`` is True
    (all nodes), False (none) or a list of member ids to start.
    """
    made: list[dn.Devnet] = []

    def make(members: dict[str, str] | None = None, start: bool | list[str] = True,
             limits: Limits = TEST_LIMITS) -> Net:
        members = dict(members or FOUR)
        d = tmp_path_factory.mktemp("devnet")
        net = dn.create_devnet(d / "net", members, base_port=dn.free_base_port(len(members)), limits=limits)
        made.append(net)
        _RUNNING.append(net)
        wrapped = Net(net)
        if start:
            wrapped.start(*([] if start is True else start))
        return wrapped

    try:
        yield make
    finally:
        for net in made:
            dn.stop(net)
            _RUNNING.remove(net)


@pytest.fixture(scope="module")
def net(devnets: Callable[..., Net]) -> Net:
    """One running four-member devnet shared by the tests of a module."""
    return devnets()
