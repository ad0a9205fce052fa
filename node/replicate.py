"""Fetching another member's entries from peers, for one checkpoint, checked before they are stored.

A witness asked to cosign a checkpoint whose entries it lacks, and a replica given a final checkpoint,
both fetch the missing range from peers (specs/api.md A.8 step 4 and A.9). Any peer may serve entries,
so no peer is believed: each range goes to :meth:`ledger.memberlog.MemberLog.append_replicated` with
the checkpoint it was fetched for and the serving peer's consistency proof from the end of the range to
that checkpoint (spec 7.3 step 3), and every entry keeps the rules. A range that does not lead to the
checkpoint is refused whole and the next peer is asked; entries that keep every rule but are not the
checkpoint's (reordered, one left out) never reach storage, where they would block the log's replica
for good. A range that leads to the checkpoint but holds an entry the rules refuse is the checkpoint's
own content: no other peer is asked, and the refusal says so (:attr:`EntriesRefused.breach`).

Left to others: when to fetch and which peers to ask first (:mod:`node.service`), the checks themselves
(:mod:`ledger`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import Awaitable, Callable

import aiohttp

from ledger import cbor
from ledger.errors import ConflictError, DecodeError, MekongError, VerificationError
from ledger.memberlog import RuleBreach, TargetTree
from node.middleware import HttpRefusal, TryAgainSoon

__all__ = ["ENTRIES_LIMITS", "FETCH_BATCH", "MAX_PEER_ANSWER", "EntriesMissing", "EntriesRefused", "EntriesUnreachable",
           "PeerError", "Replicator", "read_peer_answer"]

#: Entries per replication request (GET /logs/{M}/entries).
FETCH_BATCH = 1000
ENTRIES_LIMITS = cbor.CborLimits(max_size=64 << 20, max_depth=2, max_items=FETCH_BATCH + 1)
#: Longest answer to a consistency proof request read from a peer (64 hashes in base64 and JSON fit in 4 KiB).
MAX_PROOF_ANSWER = 16 << 10

#: The largest answer read from a peer: a page of entries (A.9) and its CBOR framing.
MAX_PEER_ANSWER = ENTRIES_LIMITS.max_size + (1 << 16)

#: ``get(url, path)``: the status and body a peer answered to ``GET path``; raises :class:`PeerError`.
PeerGet = Callable[[str, str], Awaitable[tuple[int, bytes]]]
#: ``append(member, raws, start, target)``, on the ledger thread: the log's new size.
Append = Callable[[str, list[bytes], int, TargetTree], Awaitable[int]]
#: ``held(member)``, on the ledger thread: the number of entries stored.
Held = Callable[[str], Awaitable[int]]


class PeerError(MekongError):
    """A peer did not answer, or answered something unusable.

    Attributes:
        status: the HTTP status the peer answered, or None if it did not answer.
        misbehaved: the peer answered, but not as any node does (an answer beyond every limit): worth a
            warning, where a peer that does not answer is only unreachable.
    """

    def __init__(self, message: str, status: int | None = None, *, misbehaved: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.misbehaved = misbehaved


class EntriesMissing(HttpRefusal):
    """Every peer answered that it holds none of the entries a checkpoint covers: 422."""

    status = 422
    kind = "entries_unavailable"


class EntriesUnreachable(TryAgainSoon):
    """The entries a checkpoint covers could not be fetched because peers did not answer: 503, retry in 1 s."""

    kind = "entries_unavailable"


class EntriesRefused(HttpRefusal):
    """What peers served for a checkpoint broke a rule or was not the checkpoint's history: 422.

    Attributes:
        breach: set when the entries led to the checkpoint's root and one of them was refused: the checkpoint
            itself covers it (evidence against the log's owner); None when only what peers served was wrong.
    """

    status = 422
    kind = "entries_refused"

    def __init__(self, message: str, breach: RuleBreach | None = None) -> None:
        super().__init__(message)
        self.breach = breach


class Replicator:
    """Fetches ranges of other members' logs for checkpoints, through the node's peer client and ledger thread.

    Args:
        get: the node's peer client.
        append: appends a verified range on the ledger thread.
        held: the size of a log on the ledger thread.
    """

    def __init__(self, get: PeerGet, append: Append, held: Held) -> None:
        self._get = get
        self._append = append
        self._held = held

    async def fetch_from_any(self, member: str, urls: list[str], start: int, end: int, root: bytes) -> None:
        """Fetch and store entries ``[start, end)`` of ``member``'s log, the tree of the checkpoint ``(end, root)``,
        asking ``urls`` in order until the log holds them.

        Raises:
            EntriesRefused: some peer served entries that were refused (a rule, or not the checkpoint's) and
                none served the right ones.
            EntriesUnreachable: peers did not answer.
            EntriesMissing: every peer answered that it holds none of them.
            StorageError: this node's database failed.
        """
        problems: list[str] = []
        unreachable = refused = False
        for url in urls:
            try:
                await self.fetch_entries(member, url, start, end, root)
                return
            except PeerError as e:
                problems.append(str(e))
                unreachable = unreachable or e.status != 404
            except RuleBreach as e:  # the checkpoint's own entries: no peer can serve others that lead to its root
                raise EntriesRefused(f"log {member}: {url}: {e}", breach=e) from e
            except (DecodeError, VerificationError, ConflictError) as e:  # the peer's entries, not this node's
                problems.append(f"{url}: {e}")
                refused = True
            start = await self._held(member)
            if start >= end:
                return
        error = EntriesRefused if refused else EntriesUnreachable if unreachable else EntriesMissing
        raise error(f"log {member}: could not fetch entries {start}-{end}: {'; '.join(problems)}")

    async def fetch_entries(self, member: str, url: str, start: int, end: int, root: bytes) -> None:
        """Fetch entries ``[start, end)`` of ``member``'s log from ``url`` and store them verified (A.9).

        ``(end, root)`` is the checkpoint they are fetched for. The next range is fetched while the ledger
        thread verifies and appends the current one, so the transfer overlaps the work; a prefetched range
        that no longer starts at the log's size is dropped.
        """

        async def fetch(lo: int) -> tuple[list[bytes], TargetTree]:
            hi = min(end, lo + FETCH_BATCH)
            status, body = await self._get(url, f"/logs/{member}/entries?start={lo}&end={hi}")
            if status != 200:
                raise PeerError(f"{url} answered {status} for entries {lo}-{hi} of log {member}", status)
            raws = cbor.decode(body, ENTRIES_LIMITS)
            if not isinstance(raws, list) or not raws or not all(isinstance(r, bytes) for r in raws):
                raise DecodeError(f"{url} sent no entries for {lo}-{hi} of log {member}")
            raws = raws[: hi - lo]
            upto = lo + len(raws)
            proof = await self._proof(url, member, upto, end) if upto < end else ()
            return raws, TargetTree(end, root, proof)

        async def drop(task: asyncio.Task[tuple[list[bytes], TargetTree]]) -> None:
            task.cancel()  # not wanted, nor its error
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

        ahead: asyncio.Task[tuple[list[bytes], TargetTree]] | None = None
        try:
            while start < end:
                raws, target = await (ahead or asyncio.create_task(fetch(start)))
                following = start + len(raws)
                ahead = asyncio.create_task(fetch(following)) if following < end else None
                size = await self._append(member, raws, start, target)
                if size != following and ahead is not None:  # the log moved otherwise: fetch from its size
                    await drop(ahead)
                    ahead = None
                start = size
        finally:
            if ahead is not None:  # a failure above
                await drop(ahead)

    async def _proof(self, url: str, member: str, first: int, second: int) -> tuple[bytes, ...]:
        path = f"/logs/{member}/proof/consistency?from={first}&to={second}"
        status, body = await self._get(url, path)
        if status != 200:
            raise PeerError(f"{url} answered {status} for the consistency proof {first}-{second} of log {member}",
                            status)
        try:
            if len(body) > MAX_PROOF_ANSWER:
                raise ValueError(f"{len(body)} bytes")
            hashes = json.loads(body)["proof"]
            if not isinstance(hashes, list):
                raise TypeError("no list")
            return tuple(base64.b64decode(h, validate=True) for h in hashes)
        except (ValueError, TypeError, KeyError, binascii.Error) as e:
            raise DecodeError(f"{url} sent an unreadable consistency proof {first}-{second} of log {member}: "
                              f"{e}") from e


async def read_peer_answer(resp: aiohttp.ClientResponse, what: str) -> bytes:
    """The body of a peer's answer, read up to :data:`MAX_PEER_ANSWER` and never without bound.

    Raises:
        PeerError: the answer is longer, announced or streamed (``misbehaved``: no node sends that).
    """
    if resp.content_length is not None and resp.content_length > MAX_PEER_ANSWER:
        raise PeerError(f"{what}: the answer of {resp.content_length} bytes exceeds {MAX_PEER_ANSWER}",
                        misbehaved=True)
    parts, held = [], 0
    async for part in resp.content.iter_chunked(1 << 16):
        held += len(part)
        if held > MAX_PEER_ANSWER:
            raise PeerError(f"{what}: the answer exceeds {MAX_PEER_ANSWER} bytes", misbehaved=True)
        parts.append(part)
    return b"".join(parts)
