"""The node configuration file (specs/08-keyfiles-config.md section 8.2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ledger.errors import DecodeError
from node.config import ConfigError, Limits, NodeConfig, Peer, load_config, write_config

GOOD = """\
member = "VN"
network = "gms-devnet"
data_dir = "data/vn"

[listen]
host = "127.0.0.1"
port = 8441

[node_key]
file = "keys/vn-node.key"
passphrase_env = "MEKONG_VN_PASSPHRASE"

[genesis]
file = "/etc/mekong/genesis.cbor"
hash = "{hash}"

[peers]
TH = "http://127.0.0.1:8442/"
KH = "https://kh.example:8443"

[limits]
max_batch_entries = 500
batch_linger_ms = 0
"""
HASH = "ab" * 32


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "node.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_load_good(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD.format(hash=HASH)))
    assert cfg.member == "VN" and cfg.network == "gms-devnet"
    assert cfg.data_dir == tmp_path / "data/vn"
    assert cfg.node_key_file == tmp_path / "keys/vn-node.key"
    assert cfg.genesis_file == Path("/etc/mekong/genesis.cbor")
    assert cfg.genesis_hash == bytes.fromhex(HASH)
    assert cfg.listen_host == "127.0.0.1" and cfg.listen_port == 8441
    assert cfg.peers == (Peer("KH", "https://kh.example:8443"), Peer("TH", "http://127.0.0.1:8442"))
    assert cfg.peer_url("TH") == "http://127.0.0.1:8442" and cfg.peer_url("LA") is None
    assert cfg.limits.max_batch_entries == 500 and cfg.limits.batch_linger_ms == 0
    assert cfg.limits.max_request_bytes == Limits().max_request_bytes
    assert cfg.origin == "mekong-trust-ledger/gms-devnet/VN"
    assert cfg.witness_name == "mekong-trust-ledger/gms-devnet/witness/VN"
    assert cfg.database_path == tmp_path / "data/vn/ledger.sqlite3"


def test_write_then_load_roundtrip(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD.format(hash=HASH)))
    out = tmp_path / "sub" / "again.toml"
    out.parent.mkdir()
    write_config(out, cfg)
    assert load_config(out) == cfg
    text = out.read_text()
    assert "/etc/mekong/genesis.cbor" in text
    # in place: paths under the directory come out relative
    write_config(tmp_path / "node.toml", cfg)
    assert 'data_dir = "data/vn"' in (tmp_path / "node.toml").read_text()
    assert load_config(tmp_path / "node.toml") == cfg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.toml", "sub"]


def test_write_escapes_strings(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD.format(hash=HASH)))
    odd = dataclasses.replace(cfg, data_dir=tmp_path / 'we"ird\\dir é', peers=())
    write_config(tmp_path / "odd.toml", odd)
    assert load_config(tmp_path / "odd.toml") == odd


def test_minimal_file_defaults(tmp_path: Path) -> None:
    text = GOOD.format(hash=HASH).split("[peers]")[0]
    cfg = load_config(_write(tmp_path, text))
    assert cfg.peers == () and cfg.limits == Limits()


BAD = [
    ("member", 'member = "VN"', 'member = "vn"', "member: a member id"),
    ("member-missing", 'member = "VN"\n', "", "member is missing"),
    ("network", 'network = "gms-devnet"', 'network = "a/b"', "network must be"),
    ("unknown-top", 'member = "VN"', 'member = "VN"\nmemebr = "VN"', "memebr is not a known key"),
    ("port-range", "port = 8441", "port = 70000", "listen.port must be"),
    ("port-type", "port = 8441", 'port = "8441"', "listen.port must be"),
    ("port-bool", "port = 8441", "port = true", "listen.port must be"),
    ("host", 'host = "127.0.0.1"', 'host = "bad host"', "listen.host"),
    ("listen-missing-key", 'host = "127.0.0.1"\n', "", "listen.host is missing"),
    ("listen-unknown-key", "port = 8441", "port = 8441\nbind = 1", "listen.bind is not a known key"),
    ("env", 'passphrase_env = "MEKONG_VN_PASSPHRASE"', 'passphrase_env = "1BAD"', "node_key.passphrase_env"),
    ("key-file-empty", 'file = "keys/vn-node.key"', 'file = ""', "node_key.file"),
    ("key-file-type", 'file = "keys/vn-node.key"', "file = 3", "node_key.file"),
    ("hash-short", f'hash = "{HASH}"', 'hash = "abcd"', "genesis.hash"),
    ("hash-not-hex", f'hash = "{HASH}"', f'hash = "{"zz" * 32}"', "genesis.hash"),
    ("peer-id", 'TH = "http://127.0.0.1:8442/"', 'th = "http://127.0.0.1:8442"', "peers.th"),
    ("peer-scheme", 'TH = "http://127.0.0.1:8442/"', 'TH = "ftp://x"', "peers.TH must be an http"),
    ("peer-query", 'TH = "http://127.0.0.1:8442/"', 'TH = "http://x/?a=1"', "peers.TH must have no query"),
    ("peer-port", 'TH = "http://127.0.0.1:8442/"', 'TH = "http://x:99999"', "peers.TH is not a valid URL"),
    ("peer-type", 'TH = "http://127.0.0.1:8442/"', "TH = 1", "peers.TH must be a URL"),
    ("peer-self", 'TH = "http://127.0.0.1:8442/"', 'VN = "http://127.0.0.1:8442"', "peers.VN is this node"),
    ("limit-unknown", "max_batch_entries = 500", "max_batch = 500", "limits.max_batch is not a known limit"),
    ("limit-zero", "max_batch_entries = 500", "max_batch_entries = 0", "limits.max_batch_entries must be"),
    ("limit-float", "max_batch_entries = 500", "max_batch_entries = 5.0", "limits.max_batch_entries must be"),
    ("limit-entry", "max_batch_entries = 500", "max_entry_bytes = 70000", "limits.max_entry_bytes must be"),
    ("limit-cross", "max_batch_entries = 500", "witness_request_timeout_ms = 999999",
     "witness_request_timeout_ms must not exceed"),
    ("limit-burst", "max_batch_entries = 500", "submitter_burst = 10", "submitter_burst must be at least"),
    ("listen-not-table", 'data_dir = "data/vn"\n\n[listen]\nhost = "127.0.0.1"\nport = 8441\n',
     'data_dir = "data/vn"\nlisten = 1\n', "listen must be a table"),
    ("toml-syntax", 'member = "VN"', "member = ", "not valid TOML"),
]


@pytest.mark.parametrize("old,new,match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_values_name_the_key(tmp_path: Path, old: str, new: str, match: str) -> None:
    text = GOOD.format(hash=HASH)
    assert old in text
    p = _write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=match) as info:
        load_config(p)
    assert str(p) in str(info.value)
    assert isinstance(info.value, DecodeError)


def test_unreadable_and_binary(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)
    p.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ConfigError, match="larger"):
        load_config(p)


def test_dataclasses_validate_directly(tmp_path: Path) -> None:
    good = load_config(_write(tmp_path, GOOD.format(hash=HASH)))
    with pytest.raises(ConfigError, match="sorted"):
        dataclasses.replace(good, peers=(Peer("TH", "http://a"), Peer("KH", "http://b")))
    with pytest.raises(ConfigError, match="genesis.hash"):
        dataclasses.replace(good, genesis_hash=b"x")
    with pytest.raises(ConfigError, match="data_dir must be a path"):
        dataclasses.replace(good, data_dir="data")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="trailing slash"):
        Peer("TH", "http://a/")
    with pytest.raises(ConfigError, match="limits.max_concurrent_requests"):
        Limits(max_concurrent_requests=-1)
    assert isinstance(NodeConfig, type)


def test_write_failure(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD.format(hash=HASH)))
    with pytest.raises(ConfigError, match="cannot write config"):
        write_config(tmp_path / "no" / "such" / "dir.toml", cfg)
