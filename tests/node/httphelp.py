"""Helpers for testing aiohttp applications without pytest-aiohttp.

``run_with_client(app, scenario)`` starts ``app`` on a loopback test server
inside a fresh event loop, runs ``await scenario(client)``, then shuts the
application down (running its ``cleanup_ctx``) and returns the scenario's
result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nacl.signing
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.config import Limits, NodeConfig

T = TypeVar("T")
NODE_SEED = b"\x07" * 32


def run_with_client(app: web.Application, scenario: Callable[[TestClient[Any, Any]], Awaitable[T]]) -> T:
    async def main() -> T:
        async with TestClient(TestServer(app)) as client:
            return await scenario(client)

    return asyncio.run(main())


def make_config(tmp_path: Path, **limits: int) -> NodeConfig:
    return NodeConfig(
        member="VN", network="gms-test", data_dir=tmp_path / "data", listen_host="127.0.0.1", listen_port=0,
        node_key_file=tmp_path / "node.key", passphrase_env="MEKONG_TEST_PASSPHRASE",
        genesis_file=tmp_path / "genesis.cbor", genesis_hash=b"\x11" * 32, limits=Limits(**limits),
    )


def node_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(NODE_SEED)
