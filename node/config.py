"""The node configuration file: one TOML document, validated in full on load.

Specified in specs/08-keyfiles-config.md section 8.2. :func:`load_config`
reads the file with :mod:`tomllib` and returns a frozen :class:`NodeConfig`;
:func:`write_config` writes one back (by hand: the format is small and
flat). Every limit the node enforces lives in :class:`Limits` (house style
rule 7), so tests and the devnet launcher can tighten them in one place.

This module knows nothing of key material or governance: it names the key
file and the environment variable holding its passphrase, and the genesis
file with its pinned hash. Opening them is :mod:`node.keystore`'s and the
governance code's job. Peer URLs here are a bootstrap list; the governance
root's member endpoints are authoritative once the node has read it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.errors import DecodeError
from ledger.files import FileTooLargeError, read_bounded

__all__ = ["DATABASE_NAME", "ConfigError", "Limits", "NodeConfig", "Peer", "Tls", "load_config", "write_config"]

#: File name of the SQLite database inside ``data_dir`` (spec 8.2.3).
DATABASE_NAME = "ledger.sqlite3"
MAX_CONFIG_BYTES = 1 << 20

_MEMBER_RE = re.compile(r"[A-Z]{2}")
_NETWORK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HOST_RE = re.compile(r"[A-Za-z0-9.:_-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


class ConfigError(DecodeError):
    """The configuration file is unreadable, not TOML, or has a bad value.

    The message names the file and the offending key in TOML dotted form
    (for example ``limits.max_batch_entries``).
    """


def _int_field(default: int, lo: int, hi: int) -> Any:
    return field(default=default, metadata={"lo": lo, "hi": hi})


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the node enforces (spec 8.2.2). Durations are integer milliseconds.

    Attributes:
        max_request_bytes: largest HTTP request body; larger gets 413.
        max_entry_bytes: largest single entry; at most 65535, because tile
            entry bundles prefix each entry with a 16-bit length.
        max_batch_entries: most entries in one submission request.
        submitter_entries_per_second: sustained entries per second one
            submitter (authenticated key id, else client address) may send.
        submitter_burst: token-bucket depth for that rate; 429 past it.
        max_tracked_submitters: rate-limit buckets kept in memory at once.
        max_concurrent_requests: requests handled at once; more get 503.
        reserved_peer_requests: of those, slots only requests from member nodes may use.
        max_requests_per_client: requests handled at once from one client address (or one member node).
        body_read_timeout_ms: how long a request body may take to arrive; slower gets 408.
        witness_request_timeout_ms: one add-checkpoint call to one witness.
        witness_quorum_timeout_ms: waiting for a quorum of cosignatures.
        checkpoint_interval_ms: how often the owner signs a new checkpoint.
        batch_linger_ms: how long submissions wait to be batched together.
        sync_interval_ms: how often the node polls peers for new checkpoints.
        heartbeat_interval_ms: how old the own log's newest cosignatures may grow before the owner has its
            newest checkpoint cosigned again, appends or not (spec 7.4.4).
    """

    max_request_bytes: int = _int_field(1 << 20, 1024, 1 << 28)
    max_entry_bytes: int = _int_field(16384, 64, 65535)
    max_batch_entries: int = _int_field(1000, 1, 100_000)
    submitter_entries_per_second: int = _int_field(200, 1, 1_000_000)
    submitter_burst: int = _int_field(1000, 1, 10_000_000)
    max_tracked_submitters: int = _int_field(10_000, 1, 10_000_000)
    max_concurrent_requests: int = _int_field(256, 1, 100_000)
    reserved_peer_requests: int = _int_field(64, 0, 99_999)
    max_requests_per_client: int = _int_field(64, 1, 100_000)
    body_read_timeout_ms: int = _int_field(10_000, 1, 3_600_000)
    witness_request_timeout_ms: int = _int_field(5000, 1, 3_600_000)
    witness_quorum_timeout_ms: int = _int_field(30_000, 1, 86_400_000)
    checkpoint_interval_ms: int = _int_field(1000, 1, 86_400_000)
    batch_linger_ms: int = _int_field(20, 0, 60_000)
    sync_interval_ms: int = _int_field(2000, 1, 86_400_000)
    heartbeat_interval_ms: int = _int_field(20_000, 100, 86_400_000)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi = f.metadata["lo"], f.metadata["hi"]
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ConfigError(f"limits.{f.name} must be an integer in [{lo}, {hi}], got {value!r}")
        if self.max_entry_bytes > self.max_request_bytes:
            raise ConfigError("limits.max_entry_bytes must not exceed limits.max_request_bytes")
        if self.submitter_burst < self.max_batch_entries:
            raise ConfigError("limits.submitter_burst must be at least limits.max_batch_entries, "
                              "or a full batch could never be accepted")
        if self.witness_request_timeout_ms > self.witness_quorum_timeout_ms:
            raise ConfigError("limits.witness_request_timeout_ms must not exceed limits.witness_quorum_timeout_ms")
        if self.reserved_peer_requests >= self.max_concurrent_requests:
            raise ConfigError("limits.reserved_peer_requests must be below limits.max_concurrent_requests, or no"
                              " public request could ever be served")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Limits:
        """Build from a ``[limits]`` table; missing keys take their defaults.

        Raises:
            ConfigError: an unknown key or a bad value.
        """
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"limits.{key} is not a known limit")
        return cls(**dict(values))


@dataclass(frozen=True, slots=True)
class Peer:
    """A peer node: its member id and base URL (no trailing slash).

    Raises:
        ConfigError: bad member id or URL.
    """

    member: str
    url: str

    def __post_init__(self) -> None:
        _check_member(self.member, f"peers.{self.member}")
        _check_url(self.url, f"peers.{self.member}")


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS settings (spec 8.2.4): the node's certificate and key, and the CA its peers' certificates chain to.

    Attributes:
        cert_file: PEM certificate chain the node serves HTTPS with; None to serve plain HTTP.
        key_file: its PEM private key (given with ``cert_file``; the file's permissions protect it).
        ca_file: PEM CA bundle the node verifies https:// peers against; None for the system store.
    """

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("tls.cert and tls.key go together: give both, or neither")

    @property
    def serving(self) -> bool:
        """Whether the node serves HTTPS."""
        return self.cert_file is not None


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A validated node configuration (spec 8.2.1).

    Attributes:
        member: this node's member id (ISO 3166-1 alpha-2, upper case).
        network: the network name, as in governance roots and checkpoint origins.
        data_dir: directory for the database and other node state.
        listen_host: address to bind.
        listen_port: TCP port to bind (0 picks a free port, for tests).
        node_key_file: the node's encrypted key file (:mod:`node.keystore`).
        passphrase_env: name of the environment variable holding its passphrase.
        genesis_file: the signed genesis root (CBOR).
        genesis_hash: the pinned SHA-256 of the genesis root payload, 32 bytes.
        peers: bootstrap peers, sorted by member id, without this member.
        limits: every bound the node enforces.
        tls: certificate, key and CA for HTTPS (spec 8.2.4).
    """

    member: str
    network: str
    data_dir: Path
    listen_host: str
    listen_port: int
    node_key_file: Path
    passphrase_env: str
    genesis_file: Path
    genesis_hash: bytes
    peers: tuple[Peer, ...] = ()
    limits: Limits = field(default_factory=Limits)
    tls: Tls = field(default_factory=Tls)

    def __post_init__(self) -> None:
        _check_member(self.member, "member")
        if not isinstance(self.network, str) or not _NETWORK_RE.fullmatch(self.network):
            raise ConfigError("network must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
        for name in ("data_dir", "node_key_file", "genesis_file"):
            if not isinstance(getattr(self, name), Path):
                raise ConfigError(f"{_TOML_NAMES[name]} must be a path")
        if not isinstance(self.listen_host, str) or not _HOST_RE.fullmatch(self.listen_host):
            raise ConfigError(f"listen.host is not a host name or address: {self.listen_host!r}")
        port = self.listen_port
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigError(f"listen.port must be an integer in [0, 65535], got {port!r}")
        if not isinstance(self.passphrase_env, str) or not _ENV_RE.fullmatch(self.passphrase_env):
            raise ConfigError("node_key.passphrase_env must be an environment variable name")
        if not isinstance(self.genesis_hash, bytes) or len(self.genesis_hash) != 32:
            raise ConfigError("genesis.hash must be 32 bytes (64 hex digits)")
        if not isinstance(self.peers, tuple) or not all(isinstance(p, Peer) for p in self.peers):
            raise ConfigError("peers must be a tuple of Peer")
        ids = [p.member for p in self.peers]
        if ids != sorted(set(ids)):
            raise ConfigError("peers must be sorted by member id, without duplicates")
        if self.member in ids:
            raise ConfigError(f"peers.{self.member} is this node's own member id")
        if not isinstance(self.limits, Limits):
            raise ConfigError("limits must be a Limits")

    @property
    def origin(self) -> str:
        """The checkpoint origin of this member's log: ``mekong-trust-ledger/<network>/<member>``."""
        return f"mekong-trust-ledger/{self.network}/{self.member}"

    @property
    def witness_name(self) -> str:
        """This node's cosigner key name: ``mekong-trust-ledger/<network>/witness/<member>``."""
        return f"mekong-trust-ledger/{self.network}/witness/{self.member}"

    @property
    def database_path(self) -> Path:
        """The SQLite database: ``<data_dir>/ledger.sqlite3``."""
        return self.data_dir / DATABASE_NAME

    def peer_url(self, member: str) -> str | None:
        """The configured base URL of ``member``, or None."""
        for p in self.peers:
            if p.member == member:
                return p.url
        return None


_TOML_NAMES = {"data_dir": "data_dir", "node_key_file": "node_key.file", "genesis_file": "genesis.file"}


def _check_member(value: object, key: str) -> None:
    if not isinstance(value, str) or not _MEMBER_RE.fullmatch(value):
        raise ConfigError(f"{key}: a member id is two upper-case letters (ISO 3166-1 alpha-2), got {value!r}")


def _check_url(value: object, key: str) -> None:
    if not isinstance(value, str) or len(value) > 2048:
        raise ConfigError(f"{key} must be a URL")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as e:
        raise ConfigError(f"{key} is not a valid URL: {e}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key} must be an http:// or https:// URL with a host, got {value!r}")
    if parts.query or parts.fragment or parts.username or parts.password or value.endswith("/"):
        raise ConfigError(f"{key} must have no query, fragment, user info or trailing slash, got {value!r}")
    if any(c.isspace() for c in value):
        raise ConfigError(f"{key} must not contain white space")


# ----------------------------------------------------------------------------- reading

_TOP_KEYS = {"member", "network", "data_dir", "listen", "node_key", "genesis", "peers", "limits", "tls"}
_TLS_KEYS = {"cert": "cert_file", "key": "key_file", "ca": "ca_file"}
_TABLE_KEYS = {"listen": {"host", "port"}, "node_key": {"file", "passphrase_env"}, "genesis": {"file", "hash"}}
_REQUIRED = {"member", "network", "data_dir", "listen", "node_key", "genesis"}


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate a node configuration file (spec 8.2).

    Relative paths in the file are resolved against the directory holding
    the file, so a devnet directory can be moved as a whole.

    Raises:
        ConfigError: the file cannot be read, is not TOML, misses a key,
            has an unknown key, or has a bad value; the message names both
            the file and the key.
    """
    p = Path(path)
    try:
        raw = read_bounded(p, MAX_CONFIG_BYTES)
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e.strerror or e}") from e
    except FileTooLargeError as e:
        raise ConfigError(f"config {p} is larger than {MAX_CONFIG_BYTES} bytes") from e
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"config {p} is not UTF-8: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {p} is not valid TOML: {e}") from e
    try:
        return _from_document(doc, p.parent.absolute())
    except ConfigError as e:
        raise ConfigError(f"config {p}: {e}") from e


def _from_document(doc: dict[str, Any], base: Path) -> NodeConfig:
    for key in doc:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{key} is not a known key")
    for key in sorted(_REQUIRED - set(doc)):
        raise ConfigError(f"{key} is missing")
    for table, keys in _TABLE_KEYS.items():
        if not isinstance(doc[table], dict):
            raise ConfigError(f"{table} must be a table")
        for key in doc[table]:
            if key not in keys:
                raise ConfigError(f"{table}.{key} is not a known key")
        for key in sorted(keys - set(doc[table])):
            raise ConfigError(f"{table}.{key} is missing")
    peers_doc = doc.get("peers", {})
    limits_doc = doc.get("limits", {})
    tls_doc = doc.get("tls", {})
    for name, value in (("peers", peers_doc), ("limits", limits_doc), ("tls", tls_doc)):
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a table")
    genesis_hex = doc["genesis"]["hash"]
    if not isinstance(genesis_hex, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", genesis_hex):
        raise ConfigError("genesis.hash must be 64 hex digits")
    peers = []
    for member, url in sorted(peers_doc.items()):
        _check_member(member, f"peers.{member}")
        if isinstance(url, str):
            url = url.rstrip("/")
        peers.append(Peer(member, url))
    return NodeConfig(
        member=doc["member"],
        network=doc["network"],
        data_dir=_path(doc["data_dir"], "data_dir", base),
        listen_host=doc["listen"]["host"],
        listen_port=doc["listen"]["port"],
        node_key_file=_path(doc["node_key"]["file"], "node_key.file", base),
        passphrase_env=doc["node_key"]["passphrase_env"],
        genesis_file=_path(doc["genesis"]["file"], "genesis.file", base),
        genesis_hash=bytes.fromhex(genesis_hex),
        peers=tuple(peers),
        limits=Limits.from_mapping(limits_doc),
        tls=_tls(tls_doc, base),
    )


def _tls(doc: dict[str, Any], base: Path) -> Tls:
    for key in doc:
        if key not in _TLS_KEYS:
            raise ConfigError(f"tls.{key} is not a known key (cert, key, ca)")
    return Tls(**{_TLS_KEYS[k]: _path(v, f"tls.{k}", base) for k, v in doc.items()})


def _path(value: object, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigError(f"{key} must be a non-empty path string")
    try:
        p = Path(value).expanduser()
    except RuntimeError as e:  # "~someone" with no such user
        raise ConfigError(f"{key}: {e}") from e
    return p if p.is_absolute() else base / p


# ----------------------------------------------------------------------------- writing


def _s(value: str) -> str:
    """A TOML basic string: JSON's escaping is a subset of TOML's."""
    return json.dumps(value, ensure_ascii=False)


def _rel(p: Path, base: Path) -> str:
    p = p if p.is_absolute() else base / p
    return str(p.relative_to(base)) if p.is_relative_to(base) else str(p)


def write_config(path: str | Path, cfg: NodeConfig) -> None:
    """Write ``cfg`` as TOML to ``path`` atomically (temporary file, then rename).

    Paths under the file's directory are written relative to it, so
    ``load_config(path)`` gives back ``cfg`` when its paths are absolute.

    Raises:
        ConfigError: the file cannot be written.
    """
    p = Path(path)
    base = p.parent.absolute()
    lines = [
        "# Mekong Trust Ledger node configuration (specs/08-keyfiles-config.md section 8.2)",
        f"member = {_s(cfg.member)}",
        f"network = {_s(cfg.network)}",
        f"data_dir = {_s(_rel(cfg.data_dir, base))}",
        "",
        "[listen]",
        f"host = {_s(cfg.listen_host)}",
        f"port = {cfg.listen_port}",
        "",
        "[node_key]",
        f"file = {_s(_rel(cfg.node_key_file, base))}",
        f"passphrase_env = {_s(cfg.passphrase_env)}",
        "",
        "[genesis]",
        f"file = {_s(_rel(cfg.genesis_file, base))}",
        f"hash = {_s(cfg.genesis_hash.hex())}",
        "",
        "[peers]",
        *(f"{peer.member} = {_s(peer.url)}" for peer in cfg.peers),
        "",
        "[limits]",
        *(f"{f.name} = {getattr(cfg.limits, f.name)}" for f in fields(Limits)),
    ]
    tls = [f"{k} = {_s(_rel(getattr(cfg.tls, attr), base))}" for k, attr in _TLS_KEYS.items()
           if getattr(cfg.tls, attr) is not None]
    if tls:
        lines += ["", "[tls]", *tls]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ConfigError(f"cannot write config {p}: {e.strerror or e}") from e
