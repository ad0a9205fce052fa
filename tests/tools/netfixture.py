"""Real member nodes in-process, for the CLI tests: :func:`node.app.create_app` on loopback, no second implementation.

:class:`Network` runs one real node application per member (real SQLite files, real node keys, a real
genesis, real witnessing and replication between them over HTTP) on an event loop in a background thread,
so that the click CLI, run in-process by ``CliRunner``, talks to real nodes over real HTTP. Keys derive
from a seed, so two networks built from one seed share a genesis: that is how a split view is made (the
same founders, two histories). :class:`Liar` is a malicious proxy in front of one node, for the tests that
play a node serving a checkpoint that is not final.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import nacl.signing
from aiohttp import web

from ledger import cbor
from ledger.checkpoint import add_signatures
from ledger.note import Note, NoteSignature
from ledger.registry import RegistryState
from ledger.roots import Member, Root, SignedRoot
from node.app import create_app
from node.appkeys import SERVICE_KEY
from node.config import Limits, NodeConfig, Peer
from node.host import LedgerHost
from tools.devnet.network import free_base_port

MEMBERS = ("KH", "LA", "TH", "VN")
#: Quick rounds: tests wait for finality and replication.
LIMITS = Limits(submitter_entries_per_second=1_000_000, submitter_burst=10_000_000, sync_interval_ms=200,
                witness_request_timeout_ms=2000, witness_quorum_timeout_ms=8000, batch_linger_ms=5,
                heartbeat_interval_ms=400)
T = TypeVar("T")


def seeded_key(seed: str) -> nacl.signing.SigningKey:
    """A deterministic Ed25519 key."""
    return nacl.signing.SigningKey(hashlib.sha256(seed.encode()).digest())


class _Loop:
    """An asyncio loop in a daemon thread; :meth:`run` waits for a coroutine from the caller's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Network:
    """Every member's real node, each with its own database, on consecutive free loopback ports.

    Args:
        directory: where the databases and the genesis file go.
        members: member ids.
        faulty: ``f``; quorum and threshold are the smallest safe value.
        seed: key seed (two networks of one seed share keys and genesis).
        issued_at: genesis time.
    """

    def __init__(self, directory: Path, members: tuple[str, ...] = MEMBERS, faulty: int = 1, seed: str = "fake",
                 issued_at: int = 1_700_000_000) -> None:
        self.network = "gms"
        self.directory = directory
        self.members = tuple(sorted(members))
        self.admin = {m: seeded_key(f"{seed}/{m}/admin") for m in members}
        self.node = {m: seeded_key(f"{seed}/{m}/node") for m in members}
        q = (len(members) + faulty) // 2 + 1
        base = free_base_port(len(members))
        self.urls = {m: f"http://127.0.0.1:{base + i}" for i, m in enumerate(self.members)}
        # The genesis names no port (the nodes find each other through their configured peers), so that two
        # networks of one seed share it.
        root = Root(self.network, 1, None, tuple(
            Member(m, f"Member {m}", (bytes(self.admin[m].verify_key),), bytes(self.node[m].verify_key),
                   (f"http://{m.lower()}.invalid",)) for m in self.members), q, q, faulty, issued_at)
        self.genesis = SignedRoot.create(root, [self.admin[m] for m in self.members])
        self.genesis_file = directory / "genesis.cbor"
        self.genesis_file.write_bytes(self.genesis.to_cbor())
        self._loop = _Loop()
        self._runners: dict[str, web.AppRunner] = {}
        try:
            for m in self.members:
                self.start(m)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ processes

    def config(self, member: str) -> NodeConfig:
        """The node configuration of ``member`` (its key is handed to the app, not read from a file)."""
        port = int(self.urls[member].rsplit(":", 1)[1])
        return NodeConfig(member=member, network=self.network, data_dir=self.directory / member,
                          listen_host="127.0.0.1", listen_port=port, node_key_file=self.directory / f"{member}.key",
                          passphrase_env="MEKONG_UNUSED", genesis_file=self.genesis_file,
                          genesis_hash=self.genesis.root_hash,
                          peers=tuple(Peer(p, self.urls[p]) for p in self.members if p != member), limits=LIMITS)

    def start(self, member: str) -> None:
        """Start ``member``'s node (again, on its port and database)."""
        async def up() -> web.AppRunner:
            runner = web.AppRunner(create_app(self.config(member), signing_key=self.node[member]),
                                   handle_signals=False, access_log=None)
            await runner.setup()
            cfg = self.config(member)
            await web.TCPSite(runner, cfg.listen_host, cfg.listen_port).start()
            return runner

        self._runners[member] = self._loop.run(up())

    def stop(self, member: str) -> None:
        """Stop ``member``'s node; its database stays."""
        runner = self._runners.pop(member)
        self._loop.run(runner.cleanup())

    def running(self, member: str) -> bool:
        return member in self._runners

    def close(self) -> None:
        """Stop every node and the loop."""
        for m in list(self._runners):
            self.stop(m)
        self._loop.close()

    # ------------------------------------------------------------------ what the nodes hold

    def host(self, member: str) -> LedgerHost:
        """The ledger host of ``member``'s running node."""
        return self._runners[member].app[SERVICE_KEY].host

    def state_of(self, member: str) -> RegistryState:
        """The registry state of ``member``'s node (its own log is authoritative there)."""
        return self.host(member).state

    def database(self, member: str) -> Path:
        """The SQLite file of ``member``'s node."""
        return self.config(member).database_path

    def status(self, member: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.urls[member] + "/status", timeout=10) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
        return doc

    def final_size(self, node: str, log: str) -> int:
        return int(self.status(node)["logs"][log]["final_size"] or 0)

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting until {what}")
            time.sleep(0.05)

    def wait_replicated(self, timeout: float = 20.0) -> None:
        """Wait until every running node holds every log final at the size its owner holds final."""
        running = [m for m in self.members if self.running(m)]
        want = {log: self.final_size(log, log) for log in running}
        for node in running:
            for log, size in want.items():
                self.wait_until(f"{node} holds log {log} final at {size}",
                                lambda node=node, log=log, size=size: self.final_size(node, log) >= size,  # type: ignore[misc]
                                timeout)

    def submit(self, member: str, raws: list[bytes], wait_final: bool = True) -> dict[str, Any]:
        """POST entries to ``member``'s own node; its JSON answer (raises on a refusal)."""
        req = urllib.request.Request(self.urls[member] + f"/logs/{member}/entries" + ("?wait=final" if wait_final
                                                                                        else ""),
                                     data=cbor.encode(raws), headers={"Content-Type": "application/cbor"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
        return doc


def start_proxy(net: Network, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> tuple[str, web.AppRunner]:
    """Serve every request with ``handler`` on a free loopback port of the network's loop: (url, runner)."""
    port = free_base_port(1)

    async def up() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    return f"http://127.0.0.1:{port}", net._loop.run(up())


class Liar:
    """A malicious node: a proxy in front of ``member``'s real node; everything it does not lie about passes.

    Args:
        net: the network.
        member: whose node it stands in front of.
        log: serve the newest stored checkpoint of this log (final or not, with whatever cosignatures it has)
            as if it were final.
        hide_roots_above: serve no governance root newer than this version (withholding them).
        freeze: keep serving the final checkpoint of every log as it is now (a frozen node).
        reorder: serve every page of entries with its first two entries swapped.
    """

    def __init__(self, net: Network, member: str, log: str | None = None, *,
                 hide_roots_above: int | None = None, freeze: bool = False, reorder: bool = False) -> None:
        self.net, self.member, self.log, self.hide, self.reorder = net, member, log, hide_roots_above, reorder
        self.served: list[str] = []
        self.frozen = {m: self.net.host(member).final[m][1] for m in net.members
                       if freeze and m in self.net.host(member).final}
        self.url, self._runner = start_proxy(net, self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        frozen = next((note for m, note in self.frozen.items() if request.path == f"/logs/{m}/checkpoint"), None)
        if frozen is not None and not request.query:
            return web.Response(body=frozen, content_type="text/plain")
        if self.hide is not None and request.path.startswith("/governance/roots"):
            if request.path == "/governance/roots":
                versions = list(range(1, self.hide + 1))
                return web.json_response({"versions": versions, "current": self.hide,
                                          "current_hash": self.net.genesis.root_hash.hex()})
            if int(request.path.rsplit("/", 1)[1]) > self.hide:
                return web.json_response({"error": "not_found", "message": "no such root"}, status=404)
        if request.method == "GET" and request.path == f"/logs/{self.log}/checkpoint" and not request.query:
            storage = self.net.host(self.member).storage
            size, note = storage.latest_checkpoint(self.log) or (0, b"")
            lines = [NoteSignature.parse_line(c.line.decode()) for c in storage.cosignatures(self.log, size)]
            body = add_signatures(Note.parse(note), lines).to_bytes()
            return web.Response(body=body, content_type="text/plain")
        async with aiohttp.ClientSession() as session, session.request(
                request.method, self.net.urls[self.member] + request.path_qs, data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() in ("content-type", "authorization")},
        ) as upstream:
            body = await upstream.read()
            if self.reorder and upstream.status == 200 and request.path.endswith("/entries"):
                raws = cbor.decode(body)
                if len(raws) >= 2:
                    body = cbor.encode([raws[1], raws[0], *raws[2:]])
                    self.served.append(request.path_qs)
            return web.Response(status=upstream.status, body=body,
                                headers={"Content-Type": upstream.headers.get("Content-Type", "application/json")})

    def stop(self) -> None:
        self.net._loop.run(self._runner.cleanup())
