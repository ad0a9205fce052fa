"""Encrypted Ed25519 key files for node, admin and issuer keys.

Specified byte for byte in specs/08-keyfiles-config.md section 8.1. A key file
is one deterministic CBOR map holding the 32-byte Ed25519 seed encrypted under
a key derived from a passphrase with Argon2id (libsodium ``crypto_pwhash``,
through pynacl) and sealed with XSalsa20-Poly1305 (``nacl.secret.SecretBox``).
The public key and a label stay in plaintext, so ``mekong keys show`` needs no
passphrase.

This module leaves where passphrases come from to its callers; it offers
:func:`passphrase_from_env` and :func:`passphrase_from_fd` for the two ways the
node and the CLI accept. Seeds and derived keys appear in no repr, log line
or exception message: errors name the file, never its secret contents.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.secret
import nacl.signing
from nacl.pwhash import argon2id

from ledger import cbor
from ledger.errors import DecodeError
from ledger.files import FileTooLargeError, read_bounded

__all__ = [
    "BOX_ALG", "FORMAT_VERSION", "KDF_ALG", "MAX_LABEL_CHARS", "MAX_MEMLIMIT", "MAX_OPSLIMIT", "MEMLIMIT_INTERACTIVE",
    "MEMLIMIT_MIN", "MEMLIMIT_MODERATE", "OPSLIMIT_INTERACTIVE", "OPSLIMIT_MIN", "OPSLIMIT_MODERATE", "KeyFile",
    "KeyFileError", "RedactedSigningKey", "change_passphrase", "generate_key_file", "load_signing_key",
    "open_key_file", "passphrase_from_env", "passphrase_from_fd", "read_key_file", "read_public_key", "seal_seed",
    "write_key_file",
]  # fmt: skip

FORMAT_VERSION = 1
KDF_ALG = "argon2id13"
BOX_ALG = "xsalsa20poly1305"
SEED_SIZE = 32
SALT_SIZE = argon2id.SALTBYTES
NONCE_SIZE = nacl.secret.SecretBox.NONCE_SIZE
CIPHERTEXT_SIZE = SEED_SIZE + nacl.secret.SecretBox.MACBYTES

OPSLIMIT_MODERATE: int = argon2id.OPSLIMIT_MODERATE
MEMLIMIT_MODERATE: int = argon2id.MEMLIMIT_MODERATE
OPSLIMIT_INTERACTIVE: int = argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT_INTERACTIVE: int = argon2id.MEMLIMIT_INTERACTIVE
OPSLIMIT_MIN: int = argon2id.OPSLIMIT_MIN
MEMLIMIT_MIN: int = argon2id.MEMLIMIT_MIN
#: Upper bounds accepted when reading a file (spec 8.1.3): a hostile file must
#: not make the node spend minutes or gigabytes deriving a key.
MAX_OPSLIMIT = 16
MAX_MEMLIMIT = argon2id.MEMLIMIT_SENSITIVE  # 1 GiB
MAX_LABEL_CHARS = 128
#: A key file is a few hundred bytes; anything much larger is not one.
MAX_FILE_BYTES = 4096
MAX_PASSPHRASE_BYTES = 4096

_LIMITS = cbor.CborLimits(max_size=MAX_FILE_BYTES, max_depth=3, max_items=32)


class KeyFileError(DecodeError):
    """A key file is missing, malformed, or cannot be opened with the passphrase.

    Also raised for a passphrase that cannot be obtained (unset variable,
    empty input). Messages name the file and never contain key material.
    """


@dataclass(frozen=True, slots=True)
class KeyFile:
    """The decoded, still encrypted contents of a key file (spec 8.1.1).

    Attributes:
        label: a human-readable name, not authenticated (spec 8.1.4).
        public_key: the Ed25519 public key, checked against the decrypted seed on load.
        opslimit: Argon2id operations limit.
        memlimit: Argon2id memory limit in bytes.
        salt: 16-byte Argon2id salt.
        nonce: 24-byte XSalsa20-Poly1305 nonce.
        ciphertext: the sealed 32-byte seed with its 16-byte MAC.
    """

    label: str
    public_key: bytes
    opslimit: int
    memlimit: int
    salt: bytes
    nonce: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        _check_label(self.label)
        _check_bytes("public_key", self.public_key, 32)
        _check_int("ops", self.opslimit, OPSLIMIT_MIN, MAX_OPSLIMIT)
        _check_int("mem", self.memlimit, MEMLIMIT_MIN, MAX_MEMLIMIT)
        _check_bytes("salt", self.salt, SALT_SIZE)
        _check_bytes("nonce", self.nonce, NONCE_SIZE)
        _check_bytes("ct", self.ciphertext, CIPHERTEXT_SIZE)

    def __repr__(self) -> str:
        return f"KeyFile(label={self.label!r}, public_key={self.public_key.hex()}, ops={self.opslimit}, mem={self.memlimit})"

    def to_cbor(self) -> bytes:
        """The exact file bytes (spec 8.1.1), deterministic CBOR."""
        return cbor.encode({
            "v": FORMAT_VERSION,
            "kdf": {"alg": KDF_ALG, "ops": self.opslimit, "mem": self.memlimit, "salt": self.salt},
            "box": {"alg": BOX_ALG, "nonce": self.nonce, "ct": self.ciphertext},
            "label": self.label,
            "public_key": self.public_key,
        })

    @classmethod
    def from_cbor(cls, data: bytes) -> KeyFile:
        """Decode and validate key file bytes.

        Raises:
            DecodeError: not a well-formed version-1 key file (the caller adds the path).
        """
        doc = cbor.decode(data, _LIMITS)
        top = _map(doc, "key file", {"v", "kdf", "box", "label", "public_key"})
        if top["v"] != FORMAT_VERSION or isinstance(top["v"], bool):
            raise DecodeError(f"unsupported key file version {top['v']!r}")
        kdf = _map(top["kdf"], "kdf", {"alg", "ops", "mem", "salt"})
        box = _map(top["box"], "box", {"alg", "nonce", "ct"})
        if kdf["alg"] != KDF_ALG:
            raise DecodeError(f"unsupported kdf {kdf['alg']!r}")
        if box["alg"] != BOX_ALG:
            raise DecodeError(f"unsupported cipher {box['alg']!r}")
        try:
            return cls(label=top["label"], public_key=top["public_key"], opslimit=kdf["ops"],
                       memlimit=kdf["mem"], salt=kdf["salt"], nonce=box["nonce"], ciphertext=box["ct"])
        except (TypeError, ValueError) as e:  # pragma: no cover - _check_* raise DecodeError
            raise DecodeError(str(e)) from e


class RedactedSigningKey(nacl.signing.SigningKey):
    """A ``nacl.signing.SigningKey`` whose ``str()`` and ``repr()`` show only the public key.

    pynacl's own ``str(signing_key)`` returns the seed bytes, so an f-string
    or a log line would print the private key. Every key this module loads is
    of this class; it signs exactly as its parent does.
    """

    def __repr__(self) -> str:
        return f"<SigningKey public={bytes(self.verify_key).hex()}>"

    __str__ = __repr__


def _map(value: Any, what: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{what} must be a map")
    have = set(value)
    if have != keys:
        missing, extra = sorted(keys - have), sorted(map(str, have - keys))
        raise DecodeError(f"{what}: missing fields {missing}, unknown fields {extra}")
    return value


def _check_bytes(name: str, value: object, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise DecodeError(f"{name} must be {size} bytes")


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise DecodeError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def _check_label(label: object) -> None:
    if not isinstance(label, str) or len(label) > MAX_LABEL_CHARS:
        raise DecodeError(f"label must be text of at most {MAX_LABEL_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in label):
        raise DecodeError("label must not contain control characters")


def _derive(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    if not isinstance(passphrase, bytes):
        raise KeyFileError("the passphrase must be bytes")
    return bytes(argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
                              opslimit=opslimit, memlimit=memlimit))


def seal_seed(seed: bytes, passphrase: bytes, label: str, *, opslimit: int = OPSLIMIT_MODERATE,
              memlimit: int = MEMLIMIT_MODERATE, salt: bytes | None = None,
              nonce: bytes | None = None) -> KeyFile:
    """Encrypt an Ed25519 seed into a :class:`KeyFile` (spec 8.1.2).

    ``salt`` and ``nonce`` are random unless given; fixing them is only for
    test vectors.

    Raises:
        KeyFileError: bad seed size, label, limits, salt or nonce.
    """
    if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
        raise KeyFileError(f"an Ed25519 seed must be {SEED_SIZE} bytes")
    salt = secrets.token_bytes(SALT_SIZE) if salt is None else salt
    nonce = secrets.token_bytes(NONCE_SIZE) if nonce is None else nonce
    try:
        _check_label(label)
        _check_int("ops", opslimit, OPSLIMIT_MIN, MAX_OPSLIMIT)
        _check_int("mem", memlimit, MEMLIMIT_MIN, MAX_MEMLIMIT)
        _check_bytes("salt", salt, SALT_SIZE)
        _check_bytes("nonce", nonce, NONCE_SIZE)
    except DecodeError as e:
        raise KeyFileError(str(e)) from e
    key = _derive(passphrase, salt, opslimit, memlimit)
    sealed = nacl.secret.SecretBox(key).encrypt(seed, nonce)
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    return KeyFile(label=label, public_key=public, opslimit=opslimit, memlimit=memlimit,
                   salt=salt, nonce=nonce, ciphertext=bytes(sealed.ciphertext))


def open_key_file(kf: KeyFile, passphrase: bytes, where: str = "key file") -> RedactedSigningKey:
    """Decrypt a :class:`KeyFile` and check its public key (spec 8.1.3 steps 4-6).

    Raises:
        KeyFileError: wrong passphrase, or the file was altered.
    """
    key = _derive(passphrase, kf.salt, kf.opslimit, kf.memlimit)
    try:
        seed = nacl.secret.SecretBox(key).decrypt(kf.ciphertext, kf.nonce)
    except nacl.exceptions.CryptoError:
        # No chaining: the libsodium error says nothing useful and nothing secret.
        raise KeyFileError(f"wrong passphrase or corrupted key file {where}") from None
    signing_key = RedactedSigningKey(seed)
    if bytes(signing_key.verify_key) != kf.public_key:
        raise KeyFileError(f"key file {where}: the public key does not match the encrypted key (altered file)")
    return signing_key


def write_key_file(path: str | Path, signing_key: nacl.signing.SigningKey, passphrase: bytes, label: str, *,
                   opslimit: int = OPSLIMIT_MODERATE, memlimit: int = MEMLIMIT_MODERATE,
                   overwrite: bool = False) -> bytes:
    """Encrypt an existing signing key into a new key file, mode 0600, atomically.

    Args:
        path: where to write; its directory must exist.
        signing_key: the key to store.
        passphrase: the passphrase, as bytes (at least one byte).
        label: a human-readable name, up to 128 characters, no control characters.
        opslimit: Argon2id operations limit (tests use :data:`OPSLIMIT_MIN`).
        memlimit: Argon2id memory limit in bytes (tests use :data:`MEMLIMIT_MIN`).
        overwrite: replace an existing file; by default an existing file is an error.

    Returns:
        The 32-byte public key.

    Raises:
        KeyFileError: empty passphrase, bad label or limits, the file exists
            (without ``overwrite``), or it cannot be written.
    """
    if not isinstance(passphrase, bytes) or not passphrase:
        raise KeyFileError("the passphrase must be non-empty bytes")
    kf = seal_seed(bytes(signing_key), passphrase, label, opslimit=opslimit, memlimit=memlimit)
    _atomic_write(Path(path), kf.to_cbor(), overwrite=overwrite)
    return kf.public_key


def generate_key_file(path: str | Path, passphrase: bytes, label: str, *, opslimit: int = OPSLIMIT_MODERATE,
                      memlimit: int = MEMLIMIT_MODERATE, overwrite: bool = False) -> bytes:
    """Generate a fresh Ed25519 key and write it as an encrypted key file.

    Arguments as :func:`write_key_file`.

    Returns:
        The 32-byte public key of the new key.

    Raises:
        KeyFileError: as :func:`write_key_file`.
    """
    return write_key_file(path, nacl.signing.SigningKey.generate(), passphrase, label,
                          opslimit=opslimit, memlimit=memlimit, overwrite=overwrite)


def read_key_file(path: str | Path) -> KeyFile:
    """Read and validate a key file without decrypting it (spec 8.1.3 steps 1-3).

    Raises:
        KeyFileError: the file cannot be read or is not a well-formed key file.
    """
    p = Path(path)
    try:
        data = read_bounded(p, MAX_FILE_BYTES)
    except OSError as e:
        raise KeyFileError(f"cannot read key file {p}: {e.strerror or e}") from e
    except FileTooLargeError as e:
        raise KeyFileError(f"key file {p} is larger than {MAX_FILE_BYTES} bytes: not a key file") from e
    try:
        return KeyFile.from_cbor(data)
    except DecodeError as e:
        raise KeyFileError(f"key file {p} is malformed: {e}") from e


def read_public_key(path: str | Path) -> bytes:
    """The public key stored in a key file, without the passphrase.

    The value is not authenticated until the file is opened with
    :func:`load_signing_key`, which checks it against the decrypted seed.

    Raises:
        KeyFileError: as :func:`read_key_file`.
    """
    return read_key_file(path).public_key


def load_signing_key(path: str | Path, passphrase: bytes) -> RedactedSigningKey:
    """Open a key file with its passphrase.

    Takes about a second with the default (moderate) Argon2id limits; call it
    from a thread when an event loop must stay responsive.

    Returns:
        A :class:`RedactedSigningKey` (a ``nacl.signing.SigningKey``).

    Raises:
        KeyFileError: unreadable or malformed file, "wrong passphrase or
            corrupted key file <path>", or a public key that does not match.
    """
    return open_key_file(read_key_file(path), passphrase, str(path))


def change_passphrase(path: str | Path, old: bytes, new: bytes, *, opslimit: int | None = None,
                      memlimit: int | None = None) -> None:
    """Re-encrypt a key file under a new passphrase (fresh salt and nonce), atomically.

    Limits default to those of the existing file.

    Raises:
        KeyFileError: as :func:`load_signing_key`, or the new passphrase is empty.
    """
    kf = read_key_file(path)
    signing_key = open_key_file(kf, old, str(path))
    if not isinstance(new, bytes) or not new:
        raise KeyFileError("the passphrase must be non-empty bytes")
    new_kf = seal_seed(bytes(signing_key), new, kf.label,
                       opslimit=kf.opslimit if opslimit is None else opslimit,
                       memlimit=kf.memlimit if memlimit is None else memlimit)
    _atomic_write(Path(path), new_kf.to_cbor(), overwrite=True)


def _atomic_write(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to a temporary 0600 file next to ``path``, fsync, then rename (spec 8.1.5)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as e:
        raise KeyFileError(f"cannot write key file {path}: {e.strerror or e}") from e
    try:
        try:
            os.fchmod(fd, 0o600)  # in case the umask or filesystem widened it
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if ``path`` exists: no check-then-write race
            os.unlink(tmp)
        _fsync_dir(path.parent)
    except FileExistsError:
        _unlink_quietly(tmp)
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it") from None
    except OSError as e:
        _unlink_quietly(tmp)
        raise KeyFileError(f"cannot write key file {path}: {e.strerror or e}") from e


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _unlink_quietly(p: Path) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def passphrase_from_env(var: str, environ: dict[str, str] | None = None) -> bytes:
    """Read a passphrase from an environment variable, UTF-8 encoded, used as is.

    Args:
        var: the variable name.
        environ: the environment to read (default ``os.environ``), for tests.

    Raises:
        KeyFileError: the variable is unset or empty.
    """
    env = os.environ if environ is None else environ
    value = env.get(var)
    if not value:
        raise KeyFileError(f"environment variable {var} holds no passphrase")
    data = value.encode("utf-8", "surrogateescape")
    if len(data) > MAX_PASSPHRASE_BYTES:
        raise KeyFileError(f"environment variable {var}: passphrase longer than {MAX_PASSPHRASE_BYTES} bytes")
    return data


def passphrase_from_fd(fd: int) -> bytes:
    """Read a passphrase from an open file descriptor (a pipe, as ``gpg --passphrase-fd``).

    Reads up to the first newline or end of input, whichever comes first;
    the newline (and a ``\\r`` before it) is not part of the passphrase. The
    descriptor is not closed.

    Raises:
        KeyFileError: the descriptor cannot be read, the passphrase is empty,
            or no newline or end of input comes within 4096 bytes.
    """
    buf = bytearray()
    try:
        while len(buf) <= MAX_PASSPHRASE_BYTES:
            chunk = os.read(fd, 1)  # one byte at a time: never consume past the line
            if not chunk or chunk == b"\n":
                break
            buf += chunk
        else:
            raise KeyFileError(f"file descriptor {fd}: passphrase longer than {MAX_PASSPHRASE_BYTES} bytes")
    except OSError as e:
        raise KeyFileError(f"cannot read a passphrase from file descriptor {fd}: {e.strerror or e}") from e
    if buf.endswith(b"\r"):
        del buf[-1]
    if not buf:
        raise KeyFileError(f"file descriptor {fd} gave an empty passphrase")
    return bytes(buf)
