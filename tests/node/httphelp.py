"""Helpers for testing aiohttp applications without pytest-aiohttp.

``run_with_client(app, scenario)`` starts ``app`` on a loopback test server
inside a fresh event loop, runs ``await scenario(client)``, then shuts the
application down (running its ``cleanup_ctx``) and returns the scenario's
result.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nacl.signing
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ledger.bodies import CredentialAnchor, IssuerKeyAdd, IssuerRegister
from ledger.entries import make_entry
from ledger.roots import Member, Root, SignedRoot
from node.config import Limits, NodeConfig

T = TypeVar("T")
NODE_SEED = b"\x07" * 32
ADMIN_SEED = b"\x08" * 32


def run_with_client(app: web.Application, scenario: Callable[[TestClient[Any, Any]], Awaitable[T]]) -> T:
    async def main() -> T:
        async with TestClient(TestServer(app)) as client:
            return await scenario(client)

    return asyncio.run(main())


def make_config(tmp_path: Path, **limits: int) -> NodeConfig:
    """A one-member network (VN, node key :func:`node_key`) with a real genesis file, pinned."""
    admin = nacl.signing.SigningKey(ADMIN_SEED)
    member = Member("VN", "Viet Nam test", (bytes(admin.verify_key),), bytes(node_key().verify_key),
                    ("http://127.0.0.1:9",))
    genesis = SignedRoot.create(Root("gms-test", 1, None, (member,), 1, 1, 0, 1_764_000_000), [admin])
    (tmp_path / "genesis.cbor").write_bytes(genesis.to_cbor())
    return NodeConfig(
        member="VN", network="gms-test", data_dir=tmp_path / "data", listen_host="127.0.0.1", listen_port=0,
        node_key_file=tmp_path / "node.key", passphrase_env="MEKONG_TEST_PASSPHRASE",
        genesis_file=tmp_path / "genesis.cbor", genesis_hash=genesis.root_hash, limits=Limits(**limits),
    )


def node_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(NODE_SEED)


@functools.cache
def signed_entries(count: int) -> list[bytes]:
    """``count`` entries of log VN that the one-member network of :func:`make_config` accepts.

    An issuer registered and given a key by VN's admin key, then anchors signed by that key: real entries,
    since the node replays its database through every rule at start.
    """
    admin = nacl.signing.SigningKey(ADMIN_SEED)
    issuer_key = nacl.signing.SigningKey(b"\x09" * 32)
    t = 1_764_000_100
    out = [make_entry("VN", "issuer.register", t, IssuerRegister("VN/test", "Test issuer", ("certificate-of-origin",),
                                                                   "high", "VN"), admin),
           make_entry("VN", "issuer.key.add", t, IssuerKeyAdd("VN/test", bytes(issuer_key.verify_key), t), admin)]
    out += [make_entry("VN", "credential.anchor", t, CredentialAnchor("VN/test", hashlib.sha256(b"%d" % i).digest()),
                       issuer_key) for i in range(count - 2)]
    return out[:count]
