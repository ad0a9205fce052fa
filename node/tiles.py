"""C2SP tlog-tiles: tile paths, hash tiles and entry bundles, served from stored tree nodes.

Implements specs/api.md section A.6, which follows C2SP tlog-tiles exactly:

- a hash tile ``tile/<L>/<N>[.p/<W>]`` at level ``L`` holds the hashes of
  tree nodes at level ``8*L`` (spec 3.2 addressing), indices ``N*256`` to
  ``N*256 + W - 1``, concatenated; a full tile has ``W = 256`` (8192 bytes);
- an entry bundle ``tile/entries/<N>[.p/<W>]`` holds entries ``N*256`` to
  ``N*256 + W - 1``, each as a big-endian uint16 length and the entry bytes;
- ``N`` is written in three-digit groups, all but the last prefixed ``x``
  (1234067 is ``x001/x234/067``); paths are parsed strictly, and only the
  canonical spelling is accepted.

Everything here is a pure function of a tree size and a :class:`TileSource`
(``get_node`` and ``read_entries``, as :class:`ledger.storage.Storage` offers
per log), plus :func:`tile_handler`, which wraps them for aiohttp. Which
logs exist and which size to serve (the stored size or the latest checkpoint)
is the caller's choice, through the resolver it passes in. The parsing
functions for fetched tiles (:func:`parse_hash_tile`,
:func:`parse_entry_bundle`) are for replication clients.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from ledger.errors import DecodeError, StorageError
from ledger.storage import Storage
from node.middleware import NotFoundError

__all__ = [
    "FULL_TILE_CACHE", "HASH_SIZE", "MAX_ENTRY_BYTES", "MAX_LEVEL", "PARTIAL_TILE_CACHE", "TILE_HEIGHT",
    "TILE_ROUTE", "TILE_WIDTH", "StorageTileSource", "Tile", "TileSource", "encode_index", "entry_bundle",
    "hash_tile", "level_tiles", "parse_entry_bundle", "parse_hash_tile", "parse_tile_path", "read_tile",
    "tile_available_width", "tile_handler",
]  # fmt: skip

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256
HASH_SIZE = 32
MAX_LEVEL = 63
#: An entry in a bundle carries a 16-bit length.
MAX_ENTRY_BYTES = 0xFFFF
#: At most 7 groups of three digits: every index below 10**21 (> 2**64).
_MAX_GROUPS = 7
#: Full tiles never change.
FULL_TILE_CACHE = "public, max-age=31536000, immutable"
#: A partial tile's bytes never change either, but it may be withdrawn once
#: the full tile exists (C2SP tlog-tiles), so it is cached briefly.
PARTIAL_TILE_CACHE = "public, max-age=60"
#: Route for mounting under a log's prefix; ``path`` is everything after ``tile/``.
TILE_ROUTE = "/logs/{member}/tile/{path:.+}"
CONTENT_TYPE = "application/octet-stream"

_LEVEL_RE = re.compile(r"0|[1-9][0-9]?")
_WIDTH_RE = re.compile(r"[1-9][0-9]{0,2}")
_GROUP_RE = re.compile(r"[0-9]{3}")


class TileSource(Protocol):
    """Read access to one log's stored tree and entries (spec 7.1, per log)."""

    def get_node(self, level: int, index: int) -> bytes:
        """The hash of complete subtree ``(level, index)``."""
        ...  # pragma: no cover

    def read_entries(self, start: int, end: int) -> Sequence[bytes]:
        """Entries ``[start, end)`` exactly as stored."""
        ...  # pragma: no cover


class StorageTileSource:
    """A :class:`TileSource` over one log of a :class:`ledger.storage.Storage`."""

    __slots__ = ("log", "storage")

    def __init__(self, storage: Storage, log: str) -> None:
        self.storage = storage
        self.log = log

    def get_node(self, level: int, index: int) -> bytes:
        """See :meth:`Storage.get_node`."""
        return self.storage.get_node(self.log, level, index)

    def read_entries(self, start: int, end: int) -> Sequence[bytes]:
        """See :meth:`Storage.read_entries`."""
        return self.storage.read_entries(self.log, start, end)

    def read_leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        """See :meth:`Storage.read_leaf_hashes`: one query for a level-0 tile."""
        return self.storage.read_leaf_hashes(self.log, start, end)


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile or entry bundle.

    Attributes:
        level: the tile level ``L`` (0 to 63); for an entry bundle, None.
        index: the tile index ``N`` within its level.
        width: number of hashes or entries, 1 to 256; 256 is a full tile.
    """

    level: int | None
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if self.level is not None and (type(self.level) is not int or not 0 <= self.level <= MAX_LEVEL):
            raise ValueError(f"tile level must be in [0, {MAX_LEVEL}], got {self.level!r}")
        if type(self.index) is not int or self.index < 0 or self.index >= 1000**_MAX_GROUPS:
            raise ValueError(f"tile index out of range: {self.index!r}")
        if type(self.width) is not int or not 1 <= self.width <= TILE_WIDTH:
            raise ValueError(f"tile width must be in [1, {TILE_WIDTH}], got {self.width!r}")

    @property
    def is_entries(self) -> bool:
        """True for an entry bundle."""
        return self.level is None

    @property
    def is_full(self) -> bool:
        """True for a full (256-wide) tile."""
        return self.width == TILE_WIDTH

    @property
    def path(self) -> str:
        """The path below the log prefix, for example ``tile/0/x001/234.p/17``."""
        level = "entries" if self.level is None else str(self.level)
        suffix = "" if self.is_full else f".p/{self.width}"
        return f"tile/{level}/{encode_index(self.index)}{suffix}"

    @property
    def cache_control(self) -> str:
        """The ``Cache-Control`` header to serve this tile with."""
        return FULL_TILE_CACHE if self.is_full else PARTIAL_TILE_CACHE


def encode_index(n: int) -> str:
    """Encode a tile index in three-digit groups: ``1234067`` -> ``x001/x234/067``.

    Raises:
        ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError("tile index must be non-negative")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def parse_tile_path(path: str) -> Tile:
    """Parse the part of a tile URL after ``tile/`` (``0/x001/234.p/17``, ``entries/000``).

    Only the canonical spelling is accepted: no leading zero groups, no
    leading zeros in ``L`` or ``W``, ``W`` below 256 for partial tiles.

    Raises:
        DecodeError: the path is not a tile path (the node answers 400).
    """
    if not isinstance(path, str) or len(path) > 128:
        raise DecodeError("not a tile path")
    parts = path.split("/")
    width = TILE_WIDTH
    if len(parts) >= 3 and parts[-2].endswith(".p"):
        if not _WIDTH_RE.fullmatch(parts[-1]) or int(parts[-1]) >= TILE_WIDTH:
            raise DecodeError(f"tile path {path!r}: the partial width must be 1 to 255 without leading zeros")
        width = int(parts[-1])
        parts = [*parts[:-2], parts[-2][:-2]]
    if len(parts) < 2:
        raise DecodeError(f"tile path {path!r}: expected <L>/<N>[.p/<W>] or entries/<N>[.p/<W>]")
    head, groups = parts[0], parts[1:]
    if head == "entries":
        level = None
    elif _LEVEL_RE.fullmatch(head) and int(head) <= MAX_LEVEL:
        level = int(head)
    else:
        raise DecodeError(f"tile path {path!r}: the level must be 0 to 63 without leading zeros, or 'entries'")
    if len(groups) > _MAX_GROUPS:
        raise DecodeError(f"tile path {path!r}: tile index too large")
    digits = []
    for i, group in enumerate(groups):
        last = i == len(groups) - 1
        body = group if last else group[1:]
        if (not last and not group.startswith("x")) or not _GROUP_RE.fullmatch(body):
            raise DecodeError(f"tile path {path!r}: index groups must be xDDD/.../DDD")
        digits.append(body)
    index = int("".join(digits))
    tile = Tile(level, index, width)
    if tile.path != "tile/" + path:
        raise DecodeError(f"tile path {path!r} is not in canonical form ({tile.path[5:]!r})")
    return tile


def tile_available_width(level: int | None, index: int, size: int) -> int:
    """How many hashes (or entries) tile ``(level, index)`` has in a tree of ``size`` leaves (0 to 256).

    Hash ``i`` of a level-``L`` tile is node ``(8*L, index*256 + i)``, which
    exists once ``size >= (index*256 + i + 1) * 256**L``.
    """
    complete = size >> (TILE_HEIGHT * (level or 0))
    return max(0, min(TILE_WIDTH, complete - index * TILE_WIDTH))


def _check_available(tile: Tile, size: int) -> None:
    have = tile_available_width(tile.level, tile.index, size)
    if tile.width > have:
        what = "entry bundle" if tile.is_entries else "tile"
        raise NotFoundError(f"{what} {tile.path} does not exist in a tree of {size} entries (it has width {have})")


def hash_tile(tile: Tile, size: int, source: TileSource) -> bytes:
    """The bytes of hash tile ``tile`` in a tree of ``size`` leaves.

    Raises:
        NotFoundError: the tile does not exist at that size (404).
        StorageError: a stored hash is missing or malformed.
    """
    if tile.level is None:
        raise ValueError("an entry bundle is not a hash tile")
    _check_available(tile, size)
    start = tile.index * TILE_WIDTH
    leaf_reader = getattr(source, "read_leaf_hashes", None)
    if tile.level == 0 and leaf_reader is not None:
        hashes = list(leaf_reader(start, start + tile.width))
    else:
        level = TILE_HEIGHT * tile.level
        hashes = [source.get_node(level, start + i) for i in range(tile.width)]
    if len(hashes) != tile.width or any(len(h) != HASH_SIZE for h in hashes):
        raise StorageError(f"stored hashes for {tile.path} are malformed")
    return b"".join(hashes)


def entry_bundle(tile: Tile, size: int, source: TileSource) -> bytes:
    """The bytes of entry bundle ``tile`` in a log of ``size`` entries.

    Raises:
        NotFoundError: the bundle does not exist at that size (404).
        StorageError: an entry is missing, or longer than 65535 bytes.
    """
    if tile.level is not None:
        raise ValueError("a hash tile is not an entry bundle")
    _check_available(tile, size)
    start = tile.index * TILE_WIDTH
    entries = list(source.read_entries(start, start + tile.width))
    if len(entries) != tile.width:
        raise StorageError(f"{tile.path}: storage returned {len(entries)} entries, not {tile.width}")
    out = bytearray()
    for i, entry in enumerate(entries, start):
        if len(entry) > MAX_ENTRY_BYTES:
            raise StorageError(f"entry {i} is {len(entry)} bytes, too long for an entry bundle")
        out += len(entry).to_bytes(2, "big")
        out += entry
    return bytes(out)


def read_tile(tile: Tile, size: int, source: TileSource) -> bytes:
    """The bytes of a hash tile or an entry bundle (see :func:`hash_tile`, :func:`entry_bundle`).

    Raises:
        NotFoundError: the tile does not exist at that size.
        StorageError: stored data is missing or malformed.
    """
    return entry_bundle(tile, size, source) if tile.is_entries else hash_tile(tile, size, source)


def level_tiles(level: int | None, size: int) -> list[Tile]:
    """Every tile of one level (None: entry bundles) in a tree of ``size`` leaves, full ones then the partial one."""
    complete = size >> (TILE_HEIGHT * (level or 0))
    tiles = [Tile(level, n) for n in range(complete // TILE_WIDTH)]
    if complete % TILE_WIDTH:
        tiles.append(Tile(level, complete // TILE_WIDTH, complete % TILE_WIDTH))
    return tiles


# ----------------------------------------------------------------------------- client side


def parse_hash_tile(data: bytes, width: int) -> list[bytes]:
    """Split fetched hash tile bytes into ``width`` hashes.

    Raises:
        DecodeError: the length is not ``32 * width``.
    """
    if len(data) != HASH_SIZE * width:
        raise DecodeError(f"hash tile of width {width} must be {HASH_SIZE * width} bytes, got {len(data)}")
    return [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def parse_entry_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """Split fetched entry bundle bytes into entries.

    Args:
        data: the bundle, uncompressed.
        width: the number of entries expected, or None to accept any from 1 to 256.

    Raises:
        DecodeError: a truncated entry, more than 256 entries, or not ``width`` entries.
    """
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2:
            raise DecodeError(f"entry bundle truncated in the length of entry {len(entries)}")
        n = int.from_bytes(data[pos:pos + 2], "big")
        pos += 2
        if len(data) - pos < n:
            raise DecodeError(f"entry bundle truncated in entry {len(entries)}")
        entries.append(data[pos:pos + n])
        pos += n
        if len(entries) > TILE_WIDTH:
            raise DecodeError(f"entry bundle holds more than {TILE_WIDTH} entries")
    if width is not None and len(entries) != width:
        raise DecodeError(f"entry bundle holds {len(entries)} entries, expected {width}")
    if not entries:
        raise DecodeError("entry bundle is empty")
    return entries


# ----------------------------------------------------------------------------- aiohttp


Resolver = Callable[[web.Request], Awaitable[tuple[int, TileSource]]]


def tile_handler(resolve: Resolver) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Build a handler for ``TILE_ROUTE`` (spec A.6).

    Args:
        resolve: given the request (with ``match_info["member"]``), returns
            the tree size to serve and the log's tile source, or raises
            :class:`NotFoundError` for a log the node does not serve.

    The handler answers 200 with the tile, 400 for a malformed path, 404 for
    a log or tile that does not exist; stored data is read in a worker thread.
    """

    async def handle(request: web.Request) -> web.Response:
        tile = parse_tile_path(request.match_info["path"])
        size, source = await resolve(request)
        body = await asyncio.to_thread(read_tile, tile, size, source)
        resp = web.Response(body=body, content_type=CONTENT_TYPE)
        resp.headers["Cache-Control"] = tile.cache_control
        if tile.is_entries:
            resp.enable_compression()  # gzip or deflate when the client accepts it
            resp.headers["Vary"] = "Accept-Encoding"  # shared caches must not mix encodings
        return resp

    return handle
