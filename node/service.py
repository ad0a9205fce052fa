"""The node's moving parts: batching submissions, collecting cosignatures, witnessing, replicating.

:class:`NodeService` owns a :class:`~node.host.LedgerHost` (every ledger call
runs on the host's one thread) and an aiohttp client session for peers. Its
background tasks are the checkpoint publisher (sign, ask every witness,
collect cosignatures until final, push the final checkpoint to every peer)
and the sync loop (poll peers for newer final checkpoints and governance
roots, fetch and verify what is missing). Protocols: specs/api.md A.7-A.10.

What it leaves to others: request parsing and responses (:mod:`node.routes`),
formats and rules (:mod:`ledger`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from ledger.checkpoint import Checkpoint
from ledger.errors import DecodeError, MekongError
from ledger.evidencecheck import note_key
from ledger.memberlog import TargetTree
from ledger.note import Note
from ledger.roots import Root
from node.config import NodeConfig
from node.host import AddCheckpoint, LedgerHost
from node.metrics import NodeMetrics
from node.peerauth import sign_request
from node.replicate import EntriesRefused, PeerError, Replicator, read_peer_answer

log = logging.getLogger("mekong.node")

T = TypeVar("T")
#: Cosignature lines taken from one witness's answer (a member's witness has one key), and its longest answer.
MAX_COSIGNATURE_LINES = 4
MAX_WITNESS_ANSWER = 4096
#: Checkpoints remembered as breaking a rule, so that they are not fetched again each round.
MAX_BREACHES_HELD = 1024


class NodeService:
    """Everything a running node does besides answering reads.

    Args:
        config: the node configuration.
        host: the ledger, opened and replayed.
        metrics: the node's metrics, updated as logs grow and witnesses answer.
        clock: Unix seconds.
    """

    def __init__(self, config: NodeConfig, host: LedgerHost, metrics: NodeMetrics, clock: Callable[[], int]) -> None:
        self.config = config
        self.host = host
        self.metrics = metrics
        self.clock = clock
        self.limits = config.limits
        self.session: aiohttp.ClientSession | None = None
        self._log_locks: dict[str, asyncio.Lock] = {}
        self._pending: list[tuple[list[bytes], asyncio.Future[list[int]]]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._dirty = asyncio.Event()
        self._final_changed = asyncio.Condition()
        self._witness_sizes: dict[str, int] = {}
        self._announced = 0  # the size of the own log's newest final checkpoint pushed to peers
        self._heartbeat_due = False  # the next round re-cosigns the newest checkpoint even if it is final
        self._last_round = 0.0  # loop time of the last completed checkpoint round
        self._tasks: list[asyncio.Task[None]] = []
        self._contact: dict[str, tuple[bool, int | None, str]] = {}  # url -> (reachable, last contact, last error)
        self._sync_trouble: dict[str, str] = {}  # peer -> what went wrong in the last sync round with it
        self._breaches: dict[tuple[str, int, bytes], EntriesRefused] = {}  # checkpoints found to break a rule
        self.replicator = Replicator(self._peer_get, self._append_range, self._held)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the peer session and start the publisher and the sync loop."""
        timeout = aiohttp.ClientTimeout(total=self.limits.witness_request_timeout_ms / 1000)
        # https:// peers are verified against the configured CA bundle, or the system store (spec 8.2.4)
        ca = self.config.tls.ca_file
        tls = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
        self.session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64, ssl=tls))
        self._tasks = [asyncio.create_task(self._publisher(), name="publisher"),
                       asyncio.create_task(self._sync_loop(), name="sync"),
                       asyncio.create_task(self._heartbeat(), name="heartbeat")]
        self._dirty.set()

    async def stop(self) -> None:
        """Finish pending submissions, stop the tasks, close the session."""
        if self._flush_task is not None:
            await asyncio.shield(self._flush_task)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the ledger thread."""
        return await asyncio.get_running_loop().run_in_executor(self.host.executor, fn, *args)

    def witness_size(self, peer: str) -> int | None:
        """The size of this node's log that ``peer`` last cosigned, as far as this node knows."""
        return self._witness_sizes.get(peer)

    def lock(self, member: str) -> asyncio.Lock:
        """The lock serialising replication and witnessing of one log."""
        return self._log_locks.setdefault(member, asyncio.Lock())

    def peers(self) -> dict[str, str]:
        """member id -> base URL of every other member: the config's peers, else the root's first endpoint."""
        configured = {p.member: p.url for p in self.config.peers}
        out = {}
        for m in self.host.root.members:
            if m.id != self.config.member:
                out[m.id] = configured.get(m.id, m.endpoints[0].rstrip("/"))
        return out

    # ------------------------------------------------------------------ HTTP to peers

    async def _request(self, method: str, url: str, path: str, body: bytes = b"", *, signed: bool = False,
                       content_type: str = "application/octet-stream") -> tuple[int, bytes]:
        assert self.session is not None
        headers = {"Content-Type": content_type}
        if signed:
            headers["Authorization"] = sign_request(self.config.member, self.host.node_key, method, path, body,
                                                    self.clock())
        try:
            async with self.session.request(method, url + path, data=body or None, headers=headers) as resp:
                answer = resp.status, await read_peer_answer(resp, f"{method} {url}{path}")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self._saw(url, f"{type(e).__name__}: {e}")
            raise PeerError(f"{method} {url}{path}: {type(e).__name__}: {e}") from e
        self._saw(url, None)
        return answer

    async def _peer_get(self, url: str, path: str) -> tuple[int, bytes]:
        return await self._request("GET", url, path)

    async def _append_range(self, member: str, raws: list[bytes], start: int, target: TargetTree) -> int:
        return await self.call(self.host.append_replicated, member, raws, start, target)

    async def _held(self, member: str) -> int:
        return await self.call(lambda: self.host.member_log(member).size)

    def _saw(self, url: str, error: str | None) -> None:
        # Reachability of a peer, logged once per change (not once per retry).
        was, last, _ = self._contact.get(url, (None, None, ""))
        if error is None:
            self._contact[url] = (True, self.clock(), "")
            if was is False:
                log.info("peer %s is reachable again", self._peer_name(url))
        else:
            self._contact[url] = (False, last, error[:200])
            if was is not False:
                log.warning("peer %s is unreachable: %s", self._peer_name(url), error[:200])

    def _peer_name(self, url: str) -> str:
        return next((f"{m} ({u})" for m, u in self.peers().items() if u == url), url)

    def peer_contact(self) -> dict[str, dict[str, object]]:
        """Per peer: its URL, whether the last exchange with it worked (None: none yet), when one last did
        (Unix seconds), and the last error."""
        out: dict[str, dict[str, object]] = {}
        for m, url in sorted(self.peers().items()):
            reachable, last, error = self._contact.get(url, (None, None, ""))
            out[m] = {"url": url, "reachable": reachable, "last_contact": last, "last_error": error or None}
        return out

    # ------------------------------------------------------------------ submissions (A.7)

    async def submit(self, raws: list[bytes]) -> list[int]:
        """Queue entries for this node's log; returns their indices once they are durable.

        Submissions arriving within ``batch_linger_ms`` are appended as one batch; if that batch
        fails, each submission is retried alone so one bad request never fails another.
        """
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append((raws, fut))
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        await asyncio.sleep(self.limits.batch_linger_ms / 1000)
        while self._pending:
            group: list[tuple[list[bytes], asyncio.Future[list[int]]]] = []
            total = 0
            while self._pending and (not group or total + len(self._pending[0][0]) <= self.limits.max_batch_entries):
                raws, fut = self._pending.pop(0)
                group.append((raws, fut))
                total += len(raws)
            combined = [r for raws, _ in group for r in raws]
            try:
                indices = await self.call(self.host.submit, combined, self.clock())
            except MekongError:
                if len(group) == 1:
                    await self._submit_alone(*group[0])
                else:
                    for raws, fut in group:
                        await self._submit_alone(raws, fut)
                continue
            pos = 0
            for raws, fut in group:
                if not fut.done():
                    fut.set_result(indices[pos: pos + len(raws)])
                pos += len(raws)
            self._dirty.set()

    async def _submit_alone(self, raws: list[bytes], fut: asyncio.Future[list[int]]) -> None:
        try:
            result = await self.call(self.host.submit, raws, self.clock())
        except MekongError as e:
            if not fut.done():
                fut.set_exception(e)
            return
        if not fut.done():
            fut.set_result(result)
        self._dirty.set()

    async def wait_final(self, size: int, timeout: float) -> tuple[int, bytes] | None:
        """Wait until this node's own log has a final checkpoint of at least ``size``."""
        async def reached() -> tuple[int, bytes]:
            async with self._final_changed:
                while True:
                    fin = self.host.final.get(self.config.member)
                    if fin is not None and fin[0] >= size:
                        return fin
                    await self._final_changed.wait()
        try:
            return await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            return None

    # ------------------------------------------------------------------ publishing checkpoints (A.8)

    async def _publisher(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._publish_round()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep publishing: the next round retries
                log.exception("checkpoint round failed")
                await asyncio.sleep(self.limits.checkpoint_interval_ms / 1000)
                self._dirty.set()

    async def _heartbeat(self) -> None:
        """Spec 7.4.4: keep the own log's newest checkpoint freshly cosigned even when nothing is appended, so
        that an honest node always serves a checkpoint whose cosignatures are younger than the interval (plus
        a round), and a node serving an older one is caught by its age."""
        interval = self.limits.heartbeat_interval_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval / 4)
            if loop.time() - self._last_round >= interval and self.config.member in self.host.final:
                self._heartbeat_due = True
                self._dirty.set()

    async def _publish_round(self) -> None:
        member = self.config.member
        heartbeat, self._heartbeat_due = self._heartbeat_due, False
        note, size = await self.call(self.host.sign_checkpoint, self.clock(), heartbeat)
        if size == 0:
            return
        fin = self.host.final.get(member)
        if fin is None or fin[0] < size or heartbeat:
            peers = self.peers()
            deadline = self.limits.witness_quorum_timeout_ms / 1000
            pending = {asyncio.create_task(self._ask_witness(p, url, note, size)) for p, url in peers.items()}
            loop = asyncio.get_running_loop()
            until = loop.time() + deadline
            try:
                while pending:
                    if loop.time() >= until:
                        log.warning("log %s size %d: no quorum of cosignatures within %.1f s", member, size, deadline)
                        break
                    done, pending = await asyncio.wait(pending, timeout=until - loop.time(),
                                                       return_when=asyncio.FIRST_COMPLETED)
                    # Every answer that is in counts, including those that came in together.
                    for t in done:
                        if lines := t.result():
                            await self._add_cosignatures(size, lines)
                    if member in self.host.final and self.host.final[member][0] >= size:
                        break
            finally:
                # Late answers still count: let them finish in the background.
                for t in pending:
                    t.add_done_callback(self._late_cosignature(size))
        self._last_round = asyncio.get_running_loop().time()
        await self._announce_final(force=heartbeat)

    def _late_cosignature(self, size: int) -> Callable[[asyncio.Task[list[str]]], None]:
        def done(task: asyncio.Task[list[str]]) -> None:
            if task.cancelled() or task.exception() is not None or not task.result():
                return
            asyncio.create_task(self._add_cosignatures(size, task.result()))
        return done

    async def _add_cosignatures(self, size: int, lines: list[str]) -> None:
        try:
            await self.call(self.host.add_cosignatures, self.config.member, size, lines)
        except MekongError as e:  # what a witness answered: its fault, not this node's
            log.warning("log %s size %d: unusable cosignature: %s", self.config.member, size, e)

    async def _ask_witness(self, peer: str, url: str, note: Note, size: int) -> list[str]:
        member = self.config.member
        for _ in range(3):
            old = min(self._witness_sizes.get(peer, 0), size)
            proof = await self.call(self.host.consistency_proof, member, old, size)
            body = (f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n").encode()
            body += note.to_bytes()
            try:
                status, answer = await self._request("POST", url, "/witness/add-checkpoint", body, signed=True,
                                                     content_type="text/plain; charset=utf-8")
            except PeerError as e:
                log.info("witness %s: %s", peer, e)
                return []
            if status == 200 and len(answer) > MAX_WITNESS_ANSWER:
                log.warning("witness %s answered log %s size %d with %d bytes: no cosignature is that long", peer,
                            member, size, len(answer))
                return []
            if status == 200:
                self._witness_sizes[peer] = size
                self.metrics.witness_lag_entries.set(0, log=member, witness=peer)
                # C2SP tlog-witness: the answer is the witness's cosignature lines (one per key it holds)
                return [line for line in answer.decode("utf-8", "replace").split("\n", MAX_COSIGNATURE_LINES)
                        if line][:MAX_COSIGNATURE_LINES]
            if status == 409 and answer.strip().isdigit() and len(answer.strip()) <= 20:
                self._witness_sizes[peer] = int(answer.strip())
                if self._witness_sizes[peer] > size:
                    log.error("witness %s has cosigned log %s at %s, beyond its size %d", peer, member,
                              answer.strip(), size)
                    return []
                continue
            log.warning("witness %s refused log %s size %d: %d %s", peer, member, size, status, answer[:300])
            return []
        return []

    async def _announce_final(self, force: bool = False) -> None:
        member = self.config.member
        fin = self.host.final.get(member)
        async with self._final_changed:
            self._final_changed.notify_all()
        if fin is None or (fin[0] <= self._announced and not force):
            return  # peers learnt this one already (or will, from their sync loop); a heartbeat pushes again
        self._announced = fin[0]
        self.metrics.final_size.set(fin[0], log=member)
        path = f"/logs/{member}/checkpoint"
        for url in self.peers().values():
            asyncio.create_task(self._push(url, path, fin[1]))

    async def _push(self, url: str, path: str, body: bytes) -> None:
        try:
            await self._request("POST", url, path, body, signed=True, content_type="text/plain; charset=utf-8")
        except PeerError as e:
            log.debug("push to %s: %s", url, e)

    # ------------------------------------------------------------------ witnessing (A.8)

    async def witness(self, body: bytes, sender: str | None) -> str:
        """Handle add-checkpoint: verify, fetch and verify the entries it covers, cosign (C2SP tlog-witness)."""
        req = AddCheckpoint.parse(body, self.config.network)
        async with self.lock(req.member):
            await self.call(self.host.witness_check, req)
            held = await self.call(lambda: self.host.member_log(req.member).size)
            if held < req.checkpoint.size:
                urls = self._sources(req.member, sender)
                await self._fetch_for(req.member, req.note.to_bytes(), urls, held, req.checkpoint)
            return await self.call(self.host.witness_cosign, req, self.clock())

    def _sources(self, member: str, sender: str | None) -> list[str]:
        peers = self.peers()
        order = [m for m in (member, sender) if m and m in peers]
        order += [m for m in peers if m not in order]
        return [peers[m] for m in order]

    async def _fetch_for(self, member: str, note: bytes, urls: list[str], held: int, cp: Checkpoint) -> None:
        # The entries [held, size) of an owner-signed checkpoint (``note``); one of them breaking a rule is
        # evidence against the owner, kept as `rule-breach` (spec 7.1.8), and the checkpoint is not fetched again.
        seen = self._breaches.get((member, cp.size, cp.root_hash))
        if seen is not None:
            raise EntriesRefused(str(seen), seen.breach)
        try:
            await self.replicator.fetch_from_any(member, urls, held, cp.size, cp.root_hash)
        except EntriesRefused as e:
            if e.breach is None:
                raise
            reason = f"size {cp.size}: {e.breach}"
            if await self.call(self.host.storage.put_evidence, member, "rule-breach", note, reason, self.clock(),
                               note_key(note)):
                log.warning("evidence stored: rule-breach of log %s at size %d", member, cp.size)
            refusal = EntriesRefused(f"{e}; the checkpoint is kept as evidence", e.breach)
            if len(self._breaches) < MAX_BREACHES_HELD:
                self._breaches[(member, cp.size, cp.root_hash)] = refusal
            raise refusal from e

    async def accept_final(self, member: str, body: bytes, sender: str | None) -> bool:
        """A final checkpoint pushed by a peer, or fetched by the sync loop: fetch its entries, verify, store."""
        cp = Checkpoint.parse(Note.parse(body).text)
        async with self.lock(member):
            fin = self.host.final.get(member)
            if fin is not None and fin[0] > cp.size:
                return True
            if fin is not None and fin[0] == cp.size:  # a heartbeat: keep the fresher cosignatures (7.4.4)
                return await self.call(self.host.add_final_checkpoint, member, body)
            held = await self.call(lambda: self.host.member_log(member).size)
            if held < cp.size:
                # Signed by the owner and final, before any entry is fetched for it. (When the entries
                # are held, add_final_checkpoint verifies what it stores, and nothing is fetched.)
                await self.call(self.host.check_final, member, body)
                await self._fetch_for(member, body, self._sources(member, sender), held, cp)
            final = await self.call(self.host.add_final_checkpoint, member, body)
        if final:
            self.metrics.final_size.set(cp.size, log=member)
        return final

    # ------------------------------------------------------------------ catching up (A.10)

    async def _sync_loop(self) -> None:
        while True:
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync round failed")
            await asyncio.sleep(self.limits.sync_interval_ms / 1000)

    async def sync_once(self) -> None:
        """Ask every peer for governance roots and final checkpoints newer than this node's.

        What goes wrong with one peer, or with one log from a peer, never keeps the others from syncing.
        """
        for peer, url in self.peers().items():
            troubles = [await self._sync_step(peer, self._sync_roots(url))]
            if troubles[0] is None:  # unreachable: no point asking for each log
                continue
            for member in list(self.host.logs):
                if member != self.config.member:
                    troubles.append(await self._sync_step(peer, self._sync_log(peer, url, member)))
            trouble = "; ".join(t for t in troubles if t)
            # What a peer keeps doing wrong is logged when it starts, changes or ends, not every round.
            if trouble != self._sync_trouble.get(peer, ""):
                if trouble:
                    log.warning("sync with %s: %s", peer, trouble)
                else:
                    log.info("sync with %s works again", peer)
                self._sync_trouble[peer] = trouble
        own = self.host.own.size
        fin = self.host.final.get(self.config.member)
        if own and (fin is None or fin[0] < own):
            self._dirty.set()  # witnesses may be back: try again for finality

    async def _sync_step(self, peer: str, step: Awaitable[None]) -> str | None:
        # "" when the step went well, what went wrong when the peer's answers did, None when it did not answer.
        try:
            await step
        except PeerError as e:  # unreachable: logged once per change by _saw
            log.debug("sync with %s: %s", peer, e)
            return str(e) if e.misbehaved else None
        except MekongError as e:
            return str(e)
        except Exception as e:  # a bug of this node's: its traceback once per change, and the others still sync
            said = f"bug: {e!r}"
            if said not in self._sync_trouble.get(peer, ""):  # not in what the last round logged
                log.exception("sync with %s failed", peer)
            return said
        return ""

    async def _sync_log(self, peer: str, url: str, member: str) -> None:
        status, body = await self._request("GET", url, f"/logs/{member}/checkpoint")
        if status != 200:
            return
        size = Checkpoint.parse(Note.parse(body).text).size
        fin = self.host.final.get(member)
        if fin is None or fin[0] < size:
            await self.accept_final(member, body, peer)

    async def _sync_roots(self, url: str) -> None:
        status, body = await self._request("GET", url, "/governance/roots")
        if status != 200:
            return
        try:
            versions = json.loads(body)["versions"]
            if not isinstance(versions, list):
                raise TypeError("versions is not a list")
        except (ValueError, TypeError, KeyError) as e:
            raise DecodeError(f"{url} sent an unreadable list of governance roots ({type(e).__name__})") from e
        have = len(self.host.chain.roots)
        for v in sorted(v for v in versions if isinstance(v, int) and v > have):
            status, data = await self._request("GET", url, f"/governance/roots/{v}")
            if status != 200:
                return
            await self.adopt_root(data)

    async def adopt_root(self, data: bytes, forward: bool = False) -> int:
        """Verify and adopt a governance root; optionally forward it to every peer.

        Only a root this node did not hold yet is forwarded: peers forward what they receive too,
        so forwarding a root already held would flood the network with it forever.
        """
        def add() -> tuple[Root, bool]:
            held = len(self.host.chain.roots)
            root = self.host.add_root(data, self.clock())
            return root, len(self.host.chain.roots) > held

        root, new = await self.call(add)
        if forward and new:
            for url in self.peers().values():
                asyncio.create_task(self._push(url, "/governance/roots", data))
        return root.version


def unix_now() -> int:
    """The wall clock in Unix seconds."""
    return int(time.time())
