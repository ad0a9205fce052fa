"""C2SP tlog-tiles (node/tiles.py, specs/api.md section A.6).

The "independent reader" below knows only the C2SP tlog-tiles and RFC 6962
definitions and hashlib: it fetches tiles and entry bundles, checks them
against each other, and recomputes tree roots from them alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from httphelp import make_config, node_key, run_with_client, signed_entries

from ledger import merkle
from ledger.credbook import book_rows
from ledger.entries import UnverifiedEntry
from ledger.errors import DecodeError, StorageError
from ledger.state import plan_batch
from ledger.statemap import StateMap
from ledger.storage import Storage
from node import tiles
from node.app import create_app
from node.middleware import NotFoundError
from node.tiles import Tile, encode_index, parse_tile_path

# ----------------------------------------------------------------------------- independent reader


def _mth(hashes: Sequence[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH over already-hashed leaves, recursively."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _path(level: str, n: int, width: int) -> str:
    groups = f"{n:03d}" if n < 1000 else None
    if groups is None:
        s = str(n)
        s = "0" * (-len(s) % 3) + s
        parts = [s[i:i + 3] for i in range(0, len(s), 3)]
        groups = "/".join(["x" + p for p in parts[:-1]] + [parts[-1]])
    return f"tile/{level}/{groups}" + ("" if width == 256 else f".p/{width}")


class Reader:
    """Reads a tiled log through ``fetch(path) -> bytes`` and nothing else."""

    def __init__(self, fetch: Callable[[str], bytes], size: int) -> None:
        self.fetch = fetch
        self.size = size
        self.cache: dict[tuple[int, int], list[bytes]] = {}

    def tile(self, level: int, n: int) -> list[bytes]:
        if (level, n) not in self.cache:
            width = min(256, (self.size >> (8 * level)) - n * 256)
            data = self.fetch(_path(str(level), n, width))
            assert len(data) == 32 * width
            self.cache[(level, n)] = [data[i:i + 32] for i in range(0, len(data), 32)]
        return self.cache[(level, n)]

    def node(self, height: int, index: int) -> bytes:
        """MTH of leaves [index * 2**height, (index+1) * 2**height), from tiles only."""
        level, rest = divmod(height, 8)
        first = index << rest  # first covered hash at tree level 8*level
        row = [self.tile(level, (first + i) // 256)[(first + i) % 256] for i in range(1 << rest)]
        return _mth(row)

    def root(self) -> bytes:
        if self.size == 0:
            return hashlib.sha256(b"").digest()
        parts, pos = [], 0
        for height in range(self.size.bit_length() - 1, -1, -1):
            if self.size >> height & 1:
                parts.append(self.node(height, pos >> height))
                pos += 1 << height
        acc = parts[-1]
        for h in reversed(parts[:-1]):
            acc = hashlib.sha256(b"\x01" + h + acc).digest()
        return acc

    def entries(self) -> list[bytes]:
        out: list[bytes] = []
        for n in range((self.size + 255) // 256):
            width = min(256, self.size - n * 256)
            data = self.fetch(_path("entries", n, width))
            pos, got = 0, []
            while pos < len(data):
                length = int.from_bytes(data[pos:pos + 2], "big")
                got.append(data[pos + 2:pos + 2 + length])
                pos += 2 + length
            assert pos == len(data) and len(got) == width
            out.extend(got)
        return out

    def check_tiles_agree(self) -> None:
        """Level-0 tiles hash the entries; each level-L+1 hash is the MTH of a full level-L tile."""
        leaves = [_leaf(e) for e in self.entries()]
        for n in range((self.size + 255) // 256):
            assert self.tile(0, n) == leaves[n * 256:(n + 1) * 256]
        level = 1
        while self.size >> (8 * level):
            for n in range(((self.size >> (8 * level)) + 255) // 256):
                for i, h in enumerate(self.tile(level, n)):
                    assert h == _mth(self.tile(level - 1, n * 256 + i))
            level += 1


# ----------------------------------------------------------------------------- sources


def _entries(count: int) -> list[bytes]:
    return [b"entry-%d-" % i + bytes(i % 7) for i in range(count)]


class MemSource:
    def __init__(self, entries: list[bytes]) -> None:
        self.entries = entries
        self.tree = merkle.MemoryTree([_leaf(e) for e in entries])

    def get_node(self, level: int, index: int) -> bytes:
        return self.tree.get(level, index)

    def read_entries(self, start: int, end: int) -> list[bytes]:
        return self.entries[start:end]


def _pure_fetch(source: MemSource, size: int) -> Callable[[str], bytes]:
    def fetch(path: str) -> bytes:
        assert path.startswith("tile/")
        return tiles.read_tile(parse_tile_path(path[5:]), size, source)
    return fetch


# ----------------------------------------------------------------------------- paths


@pytest.mark.parametrize("n,text", [
    (0, "000"), (7, "007"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067"),
    (10**18, "x001/x000/x000/x000/x000/x000/000"),
])
def test_encode_index(n: int, text: str) -> None:
    assert encode_index(n) == text
    assert parse_tile_path(f"0/{text}").index == n


@pytest.mark.parametrize("path,tile", [
    ("0/000", Tile(0, 0)), ("1/x001/234.p/17", Tile(1, 1234, 17)), ("63/000.p/1", Tile(63, 0, 1)),
    ("entries/005", Tile(None, 5)), ("entries/x001/000.p/255", Tile(None, 1000, 255)),
])
def test_parse_good_paths(path: str, tile: Tile) -> None:
    assert parse_tile_path(path) == tile
    assert tile.path == "tile/" + path


BAD_PATHS = {
    "no-groups": "0", "short-group": "0/1", "x-on-last": "0/x001", "level-leading-zero": "00/000",
    "level-64": "64/000", "level-neg": "-1/000", "width-0": "0/000.p/0", "width-256": "0/000.p/256",
    "width-leading-zero": "0/000.p/07", "leading-zero-group": "0/x000/001", "letters": "entries/abc",
    "trailing-slash": "0/000/", "p-without-width": "0/000.p", "long-group": "0/x1000/000",
    "extra-after-width": "0/000.p/1/2", "arabic-digits": "0/\u0660\u0660\u0660", "empty": "",
    "too-many-groups": "0/" + "x001/" * 7 + "000", "very-long": "0/" + "x001/" * 100 + "000",
    "space": "0/ 00", "plus": "0/+00", "x-middle-missing": "0/001/000", "level-word": "tiles/000",
    "double-p": "0/000.p.p/3", "uppercase-x": "0/X001/000", "width-sign": "0/000.p/+3",
}


@pytest.mark.parametrize("path", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_parse_bad_paths(path: str) -> None:
    with pytest.raises(DecodeError):
        parse_tile_path(path)


def test_spec_example_70000() -> None:
    # C2SP tlog-tiles: 273 full level-0 tiles, a partial of width 112, one full level-1
    # tile, a partial level-1 tile of width 17 and a partial level-2 tile of width 1.
    level0, level1, level2 = (tiles.level_tiles(lv, 70_000) for lv in (0, 1, 2))
    assert len(level0) == 274 and all(t.is_full for t in level0[:273]) and level0[-1] == Tile(0, 273, 112)
    assert level1 == [Tile(1, 0), Tile(1, 1, 17)]
    assert level2 == [Tile(2, 0, 1)]
    assert tiles.level_tiles(3, 70_000) == []
    assert tiles.level_tiles(1, 256) == [Tile(1, 0, 1)]
    assert tiles.level_tiles(None, 300) == [Tile(None, 0), Tile(None, 1, 44)]


# ----------------------------------------------------------------------------- pure serving


@pytest.mark.parametrize("size", [1, 255, 256, 257, 1000, 1024, 65536 + 300])
def test_root_from_tiles_alone(size: int) -> None:
    source = MemSource(_entries(size))
    reader = Reader(_pure_fetch(source, size), size)
    assert reader.root() == source.tree.root() == merkle.tree_root(size, source.get_node)
    if size <= 1024:
        assert reader.root() == _mth([_leaf(e) for e in source.entries])
        reader.check_tiles_agree()


def test_every_smaller_size_is_served_too() -> None:
    source = MemSource(_entries(1000))
    for size in (1, 2, 3, 100, 511, 512, 513, 999):
        reader = Reader(_pure_fetch(source, 1000), size)  # tiles of the big tree, read as a smaller one
        assert reader.root() == source.tree.root(size)


def test_availability() -> None:
    source = MemSource(_entries(1000))
    assert len(tiles.read_tile(Tile(0, 3, 232), 1000, source)) == 232 * 32
    assert tiles.read_tile(Tile(0, 3, 10), 1000, source) == tiles.read_tile(Tile(0, 3, 232), 1000, source)[:320]
    for tile in (Tile(0, 3), Tile(0, 3, 233), Tile(0, 4, 1), Tile(1, 0), Tile(1, 0, 4), Tile(2, 0, 1),
                 Tile(None, 3), Tile(None, 4, 1)):
        with pytest.raises(NotFoundError):
            tiles.read_tile(tile, 1000, source)
    assert tiles.tile_available_width(1, 0, 1000) == 3
    assert tiles.tile_available_width(0, 10**12, 1000) == 0


def test_entry_bundles_reject_oversized_entries() -> None:
    source = MemSource([b"x" * 70_000])
    with pytest.raises(StorageError, match="too long"):
        tiles.entry_bundle(Tile(None, 0, 1), 1, source)
    assert tiles.entry_bundle(Tile(None, 0, 1), 1, MemSource([b""])) == b"\x00\x00"


def test_client_side_parsers() -> None:
    assert tiles.parse_entry_bundle(b"\x00\x01a\x00\x00\x00\x02bc") == [b"a", b"", b"bc"]
    assert tiles.parse_entry_bundle(b"\x00\x01a", 1) == [b"a"]
    for bad, width in ((b"\x00", None), (b"\x00\x05abc", None), (b"", None), (b"\x00\x01a", 2),
                       (b"\x00\x00" * 257, None)):
        with pytest.raises(DecodeError):
            tiles.parse_entry_bundle(bad, width)
    assert tiles.parse_hash_tile(bytes(64), 2) == [bytes(32)] * 2
    with pytest.raises(DecodeError):
        tiles.parse_hash_tile(bytes(65), 2)


# ----------------------------------------------------------------------------- over HTTP


def _storage_with(entries: list[bytes], log: str = "VN") -> Storage:
    storage = Storage.open(":memory:")
    tree = merkle.MemoryTree()
    state_map = StateMap()
    for start in range(0, len(entries), 100):  # several batches, as a node appends them
        batch = entries[start:start + 100]
        leaves = [_leaf(e) for e in batch]
        nodes = merkle.stored_hashes_for_batch(start, leaves, tree.get)
        tree.extend(leaves)
        bodies = [UnverifiedEntry.decode(e).body for e in batch]
        state = plan_batch(state_map, start, bodies, leaves, partial(storage.state_rows, log))
        storage.append_entries(log, start, batch, leaves, nodes, state=state, book=book_rows(start, bodies))
        state_map.apply(state.update)
    return storage


def _serve(tmp_path: Path, storage: Storage, scenario: Callable[[TestClient[Any, Any]], Any]) -> Any:
    app = create_app(make_config(tmp_path), storage=storage, signing_key=node_key())
    return run_with_client(app, scenario)


def test_http_reader_recomputes_root(tmp_path: Path) -> None:
    entries = signed_entries(1000)
    storage = _storage_with(entries)
    fetched: dict[str, bytes] = {}

    async def scenario(client: TestClient[Any, Any]) -> None:
        reader = Reader(lambda p: fetched[p], 1000)
        paths = [t.path for lv in (None, 0, 1) for t in tiles.level_tiles(lv, 1000)]
        for path in paths:
            resp = await client.get(f"/logs/VN/{path}", headers={"Accept-Encoding": "gzip"})
            assert resp.status == 200, await resp.text()
            assert resp.content_type == "application/octet-stream"
            full = ".p/" not in path
            assert resp.headers["Cache-Control"] == (tiles.FULL_TILE_CACHE if full else tiles.PARTIAL_TILE_CACHE)
            if "entries" in path:
                assert resp.headers.get("Content-Encoding") == "gzip"
                assert resp.headers["Vary"] == "Accept-Encoding"
            fetched[path] = await resp.read()
        assert reader.root() == merkle.root_from_leaf_hashes([_leaf(e) for e in entries])
        reader.check_tiles_agree()
        assert reader.entries() == entries

    try:
        _serve(tmp_path, storage, scenario)
    finally:
        storage.close()


def test_http_refusals(tmp_path: Path) -> None:
    storage = _storage_with(signed_entries(300))

    async def scenario(client: TestClient[Any, Any]) -> None:
        cases = {
            "/logs/VN/tile/0/000.p/0": (400, "bad_request"),
            "/logs/VN/tile/0/x000/001": (400, "bad_request"),
            "/logs/VN/tile/00/000": (400, "bad_request"),
            "/logs/VN/tile/entries/" + "x999/" * 50 + "000": (400, "bad_request"),
            "/logs/VN/tile/0/001": (404, "not_found"),  # only 44 leaves in tile 1
            "/logs/VN/tile/0/001.p/45": (404, "not_found"),
            "/logs/VN/tile/1/000": (404, "not_found"),
            "/logs/VN/tile/2/000.p/1": (404, "not_found"),
            "/logs/TH/tile/0/000": (404, "not_found"),
            "/logs/vn/tile/0/000": (404, "not_found"),
            "/logs/VN/tile/": (404, "not_found"),
            "/logs/VN/tile/0/%ff%fe": (400, "bad_request"),
        }
        for url, (status, kind) in cases.items():
            resp = await client.get(url)
            assert resp.status == status, (url, await resp.text())
            body = await resp.json()
            assert body["error"] == kind and body["message"], url
            assert resp.headers["Cache-Control"] == "no-store"
        resp = await client.get("/logs/VN/tile/0/001.p/44")
        assert resp.status == 200 and len(await resp.read()) == 44 * 32
        resp = await client.get("/logs/VN/tile/entries/001.p/44", headers={"Accept-Encoding": "identity"})
        assert resp.status == 200 and "Content-Encoding" not in resp.headers
        assert tiles.parse_entry_bundle(await resp.read(), 44)[0] == signed_entries(300)[256]
        resp = await client.head("/logs/VN/tile/0/000")
        assert resp.status == 200 and resp.headers["Cache-Control"] == tiles.FULL_TILE_CACHE
        resp = await client.post("/logs/VN/tile/0/000")
        assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
        assert "GET" in resp.headers.get("Allow", "")

    try:
        _serve(tmp_path, storage, scenario)
    finally:
        storage.close()


def test_storage_failure_is_a_generic_500(tmp_path: Path) -> None:
    storage = _storage_with(signed_entries(10))

    def broken(log: str, start: int, end: int) -> list[bytes]:
        raise StorageError("disk I/O error at /secret/path/ledger.sqlite3")

    storage.read_entries = broken  # type: ignore[method-assign]

    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.get("/logs/VN/tile/entries/000.p/10")
        assert resp.status == 500
        body = await resp.json()
        assert body["error"] == "storage_error" and "secret" not in body["message"]

    try:
        _serve(tmp_path, storage, scenario)
    finally:
        storage.close()


def test_a_node_replays_its_database_only_when_asked(tmp_path: Path) -> None:
    # mekong node start --replay (spec 7.5): every stored byte is checked before the node serves; without it
    # the node starts on the checks of spec 7.5.3, which do not read the entries one by one.
    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.get("/logs/VN/checkpoint")
        assert resp.status in (200, 404)

    entries = signed_entries(300)
    storage = _storage_with(entries)
    try:
        for replay_first in (False, True):  # a sound database starts either way
            run_with_client(create_app(make_config(tmp_path), storage=storage, signing_key=node_key(),
                                       replay_first=replay_first), scenario)
        storage._conn.execute("UPDATE entries SET raw = ? WHERE log = 'VN' AND idx = 150",  # an old signature changed
                              (entries[150][:-1] + bytes([entries[150][-1] ^ 1]),))
        with pytest.raises(StorageError, match="does not replay cleanly.*log VN entry 150"):
            run_with_client(create_app(make_config(tmp_path), storage=storage, signing_key=node_key(),
                                       replay_first=True), scenario)
    finally:
        storage.close()
