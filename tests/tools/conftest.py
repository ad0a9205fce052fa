"""Fixtures for the CLI tests: a runner with exit-code handling, fast key files, real nodes in-process."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from netfixture import Network

from node import keystore
from tools.cli.main import cli

PASSPHRASE = "correct horse battery staple"
HERE = Path(__file__).parent
COO_CLAIMS = HERE / "coo.json"

Invoke = Callable[..., Result]


@pytest.fixture
def invoke(tmp_path: Path) -> Invoke:
    """Run ``mekong ARGS...``; the passphrase is in $PP, the replica defaults to a temporary directory."""
    runner = CliRunner()
    env = {"PP": PASSPHRASE, "MEKONG_REPLICA": str(tmp_path / "default-replica"), "MEKONG_AS_MEMBER": "",
           "MEKONG_PIN": ""}

    def run(*args: Any, input: str | None = None, env_extra: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli, [str(a) for a in args], input=input, env={**env, **(env_extra or {})},
                             catch_exceptions=False)

    return run


def make_key(path: Path, passphrase: str = PASSPHRASE) -> Path:
    """An encrypted key file with the minimum Argon2id limits, written by the library (fast)."""
    keystore.generate_key_file(path, passphrase.encode(), path.stem, opslimit=keystore.OPSLIMIT_MIN,
                               memlimit=keystore.MEMLIMIT_MIN)
    return path


def write_key(path: Path, signing_key: Any, passphrase: str = PASSPHRASE) -> Path:
    """An existing key (a fake network's admin or node key) as a fast encrypted key file."""
    keystore.write_key_file(path, signing_key, passphrase.encode(), path.stem, opslimit=keystore.OPSLIMIT_MIN,
                            memlimit=keystore.MEMLIMIT_MIN)
    return path


@pytest.fixture
def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    """Four real member nodes in-process (f = 1, quorum 3), with every admin key as a key file in tmp_path/keys."""
    d = tmp_path / "net"
    d.mkdir()
    network = Network(d)
    (tmp_path / "keys").mkdir()
    for m, k in network.admin.items():
        write_key(tmp_path / "keys" / f"{m}-admin.key", k)
    yield network
    network.close()


class NodeHandle:
    """One member's node of :class:`Network`: its URL, and stopping and starting it again."""

    def __init__(self, net: Network, member: str) -> None:
        self.net, self.member = net, member

    @property
    def url(self) -> str:
        return self.net.urls[self.member]

    def stop(self) -> None:
        self.net.stop(self.member)

    def start(self) -> None:
        self.net.start(self.member)


@pytest.fixture
def node(net: Network) -> NodeHandle:
    """Viet Nam's node: where its administrators and issuers submit, and a node verifiers read from."""
    return NodeHandle(net, "VN")


def check_no_secret(text: str, *paths: Path) -> None:
    """Assert that no seed of the given key files appears in ``text`` (hex or raw)."""
    for p in paths:
        seed = bytes(keystore.load_signing_key(p, PASSPHRASE.encode()))
        assert seed.hex() not in text
        assert seed.hex().upper() not in text


os.environ.setdefault("COLUMNS", "120")


class Scenario:
    """VN registers VN/customs-coo with an issuer key, TH recognises VN's certificates of origin,
    and VN/customs-coo issues and anchors one; all through the CLI against the real nodes."""

    def __init__(self, invoke: Invoke, tmp_path: Path, net: Network, node: NodeHandle) -> None:
        self.invoke, self.net, self.node, self.dir = invoke, net, node, tmp_path
        keys = tmp_path / "keys"
        self.vn_admin, self.th_admin = keys / "VN-admin.key", keys / "TH-admin.key"
        self.issuer_key = make_key(keys / "coo-1.key")
        self.next_key = make_key(keys / "coo-2.key")
        self.credential = tmp_path / "coo.cbor"
        self.pin = net.genesis.root_hash.hex()
        self.replica = tmp_path / "replica"
        self.ok("issuer", "register", "VN/customs-coo", "--name", "VN CO office", "--document-type",
                "certificate-of-origin", "--jurisdiction", "VN", *self.entry_args(self.vn_admin))
        self.ok("issuer", "add-key", "VN/customs-coo", "--issuer-key", self.issuer_key, "--next-key", self.next_key,
                "--valid-from", "2020-01-01", *self.entry_args(self.vn_admin))
        self.ok("policy", "set", "--member", "TH", "--recognise", "VN:certificate-of-origin:substantial",
                *self.entry_args(self.th_admin, "TH"))
        self.ok("credential", "issue", "--claims", COO_CLAIMS, "--issuer", "VN/customs-coo", "--key",
                self.issuer_key, "--passphrase-env", "PP", "--out", self.credential, "--exp", "2100-01-01")
        self.ok("credential", "anchor", self.credential, *self.entry_args(self.issuer_key))

    def entry_args(self, key: Path, member: str = "VN") -> list[object]:
        """The options submitting an entry of ``member``'s log to that member's own node."""
        return ["--node", self.net.urls[member], "--key", key, "--passphrase-env", "PP"]

    def ok(self, *args: object) -> Result:
        r = self.invoke(*args)
        assert r.exit_code == 0, r.output
        return r

    def verify(self, *args: object, subject: Path | None = None) -> Result:
        return self.invoke("verify", subject or self.credential, "--full", "--replica", self.replica, *args)


@pytest.fixture
def scenario(invoke: Invoke, tmp_path: Path, net: Network, node: NodeHandle) -> Scenario:
    """The network after the usual first steps (see :class:`Scenario`)."""
    return Scenario(invoke, tmp_path, net, node)
