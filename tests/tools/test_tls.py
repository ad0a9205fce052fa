"""Nodes over HTTPS (spec 8.2.4): real node processes with certificates from a test CA made on the fly.

VN and TH serve HTTPS and reach each other at https:// URLs, verifying against the test CA; the CLI verifies
against it with --ca-file and refuses a node whose certificate does not chain to what it trusts.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

trustme = pytest.importorskip("trustme")

from node.config import Peer, Tls, load_config, write_config
from tools.devnet import network as dn


def _env() -> dict[str, str]:
    return {**os.environ, dn.PASSPHRASE_ENV: dn.passphrase().decode()}


def _mekong(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *map(str, args)], capture_output=True, text=True,
                          env=_env(), timeout=60, check=False)


@pytest.fixture
def tls_net(tmp_path: Path) -> Iterator[tuple[dn.Devnet, Path, dict[str, str]]]:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    net = dn.create_devnet(tmp_path / "net", base_port=dn.free_base_port(6))
    urls = {m.id: m.url.replace("http://", "https://") for m in net.members}
    procs = []
    for member in ("VN", "TH"):
        m = net.member(member)
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert_file, key_file = m.config.parent / "cert.pem", m.config.parent / "key.pem"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        cfg = load_config(m.config)
        peers = tuple(Peer(p.member, urls[p.member]) for p in cfg.peers)
        write_config(m.config, replace(cfg, peers=peers, tls=Tls(cert_file, key_file, ca_file)))
        procs.append(subprocess.Popen([sys.executable, "-m", "tools.cli", "node", "start", "--config", str(m.config)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env()))
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + 60
    for member in ("VN", "TH"):
        while True:
            try:
                with urllib.request.urlopen(urls[member] + "/healthz", timeout=2, context=context) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                [p.stderr.read() if p.stderr else "" for p in procs if p.poll() is not None]
            time.sleep(0.2)
    yield net, ca_file, urls
    for p in procs:
        p.terminate()
    for p in procs:
        p.communicate(timeout=30)


def test_nodes_serve_https_and_peers_verify_each_other(tls_net: tuple[dn.Devnet, Path, dict[str, str]]) -> None:
    _, ca_file, urls = tls_net
    # the CLI trusts the test CA when told to, and then talks to the node over TLS
    r = _mekong("--ca-file", ca_file, "node", "status", "--node", urls["VN"], "--json")
    assert r.returncode == 0, r.stderr
    # VN reached TH over https, checking TH's certificate against the configured CA
    deadline = time.monotonic() + 30
    while True:
        doc = json.loads(_mekong("--ca-file", ca_file, "node", "status", "--node", urls["VN"], "--json").stdout)
        if doc["peers"]["TH"]["reachable"]:
            break
        assert time.monotonic() < deadline, doc["peers"]
        time.sleep(0.5)
    assert doc["peers"]["TH"]["url"].startswith("https://")
    assert doc["peers"]["CN"]["reachable"] is False  # not running


def test_the_cli_refuses_a_node_it_cannot_verify(tls_net: tuple[dn.Devnet, Path, dict[str, str]],
                                                 tmp_path: Path) -> None:
    _, _, urls = tls_net
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    r = _mekong("--ca-file", other, "node", "status", "--node", urls["VN"])
    assert r.returncode == 4 and "CERTIFICATE_VERIFY_FAILED" in r.stderr, r.stderr
    assert r.stderr.startswith("mekong: error: ")
    r = _mekong("--ca-file", tmp_path / "missing.pem", "node", "status", "--node", urls["VN"])
    assert r.returncode == 3 and "does not exist" in r.stderr
