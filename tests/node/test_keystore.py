"""Encrypted key files (specs/08-keyfiles-config.md section 8.1)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from ledger import cbor
from ledger.errors import DecodeError, MekongError
from node import keystore as ks
from node.keystore import KeyFileError

FAST: dict[str, Any] = {"opslimit": ks.OPSLIMIT_MIN, "memlimit": ks.MEMLIMIT_MIN}
PASS = b"correct horse battery staple"
SEED = bytes(range(32))

# spec 8.1.6: the example in the spec, byte for byte.
VECTOR_HEX = (
    "a561760163626f78a362637458300cc7d90c53869b674a8380ea47594aa7fdea7a694ce9f48670270fe2b6643090cd"
    "32981098fcdc84898919639bb0413c63616c67707873616c73613230706f6c7931333035656e6f6e636558186465666768"
    "696a6b6c6d6e6f707172737475767778797a7b636b6466a463616c676a6172676f6e3269643133636d656d192000636f"
    "7073016473616c7450000102030405060708090a0b0c0d0e0f656c6162656c6b564e206e6f6465206b65796a7075626c"
    "69635f6b6579582003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
)


def _seed_hex_absent(text: str) -> None:
    assert SEED.hex() not in text
    assert SEED.hex().upper() not in text
    assert repr(SEED) not in text


def test_spec_vector_decrypts_and_reencodes() -> None:
    data = bytes.fromhex(VECTOR_HEX)
    kf = ks.KeyFile.from_cbor(data)
    assert kf.label == "VN node key"
    assert kf.to_cbor() == data
    sk = ks.open_key_file(kf, PASS)
    assert bytes(sk) == SEED
    again = ks.seal_seed(SEED, PASS, "VN node key", salt=bytes(range(16)), nonce=bytes(range(100, 124)), **FAST)
    assert again.to_cbor() == data


def test_generate_load_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    pub = ks.generate_key_file(path, PASS, "VN node", **FAST)
    assert len(pub) == 32
    assert ks.read_public_key(path) == pub
    sk = ks.load_signing_key(path, PASS)
    assert bytes(sk.verify_key) == pub
    assert ks.read_key_file(path).label == "VN node"


def test_file_mode_is_0600_and_no_temp_left(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        path = tmp_path / "k.key"
        ks.generate_key_file(path, PASS, "x", **FAST)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    first = ks.generate_key_file(path, PASS, "x", **FAST)
    with pytest.raises(KeyFileError, match="already exists"):
        ks.generate_key_file(path, PASS, "y", **FAST)
    assert ks.read_public_key(path) == first
    second = ks.generate_key_file(path, PASS, "y", overwrite=True, **FAST)
    assert ks.read_public_key(path) == second != first
    assert len(list(tmp_path.iterdir())) == 1


def test_write_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot write"):
        ks.generate_key_file(tmp_path / "nope" / "k.key", PASS, "x", **FAST)


def test_wrong_passphrase_message(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    ks.write_key_file(path, nacl.signing.SigningKey(SEED), PASS, "x", **FAST)
    with pytest.raises(KeyFileError) as info:
        ks.load_signing_key(path, b"wrong")
    assert str(info.value) == f"wrong passphrase or corrupted key file {path}"
    assert isinstance(info.value, DecodeError) and isinstance(info.value, MekongError)
    _seed_hex_absent(str(info.value))


def _tamper(path: Path, **changes: object) -> None:
    doc = cbor.decode(path.read_bytes())
    for dotted, value in changes.items():
        parts = dotted.split("__")
        target = doc
        for p in parts[:-1]:
            target = target[p]
        if value is None:
            del target[parts[-1]]
        else:
            target[parts[-1]] = value
    path.write_bytes(cbor.encode(doc))


@pytest.mark.parametrize("changes,match", [
    ({"box__ct": bytes(48)}, "wrong passphrase or corrupted"),
    ({"box__nonce": bytes(24)}, "wrong passphrase or corrupted"),
    ({"kdf__salt": bytes(16)}, "wrong passphrase or corrupted"),
    ({"kdf__ops": 2}, "wrong passphrase or corrupted"),
    ({"public_key": bytes(32)}, "does not match"),
    ({"v": 2}, "unsupported key file version"),
    ({"v": True}, "unsupported key file version"),
    ({"kdf__alg": "scrypt"}, "unsupported kdf"),
    ({"box__alg": "aes"}, "unsupported cipher"),
    ({"kdf__ops": 10**6}, "ops must be"),
    ({"kdf__mem": 1 << 40}, "mem must be"),
    ({"kdf__mem": 0}, "mem must be"),
    ({"box__ct": b"short"}, "ct must be 48 bytes"),
    ({"label": "x" * 200}, "label"),
    ({"label": "bad\nlabel"}, "control"),
    ({"public_key": None}, "missing fields"),
    ({"extra": 1}, "unknown fields"),
    ({"kdf": [1, 2]}, "kdf must be a map"),
], ids=["ciphertext", "nonce", "salt", "opslimit", "public-key", "version", "version-bool", "kdf-alg",
        "box-alg", "huge-ops", "huge-mem", "zero-mem", "short-ct", "long-label", "control-label",
        "missing-field", "extra-field", "kdf-not-map"])
def test_tampered_files(tmp_path: Path, changes: dict[str, object], match: str) -> None:
    path = tmp_path / "k.key"
    ks.write_key_file(path, nacl.signing.SigningKey(SEED), PASS, "x", **FAST)
    _tamper(path, **changes)
    with pytest.raises(KeyFileError, match=match) as info:
        ks.load_signing_key(path, PASS)
    assert str(path) in str(info.value)
    _seed_hex_absent(str(info.value))


@pytest.mark.parametrize("data", [b"", b"\x00", b"garbage" * 10, b"\xa1\x61v\x01", b"\xff" * 5000,
                                  cbor.encode([1, 2, 3]), cbor.encode({"v": 1})],
                         ids=["empty", "zero", "text", "tiny-map", "huge", "array", "only-version"])
def test_garbage_files(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(data)
    with pytest.raises(KeyFileError, match=str(path)):
        ks.read_public_key(path)
    with pytest.raises(KeyFileError):
        ks.load_signing_key(path, PASS)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read key file"):
        ks.read_public_key(tmp_path / "missing.key")


def test_label_is_not_authenticated_but_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    ks.write_key_file(path, nacl.signing.SigningKey(SEED), PASS, "x", **FAST)
    _tamper(path, label="renamed")
    assert bytes(ks.load_signing_key(path, PASS)) == SEED  # spec 8.1.4
    with pytest.raises(KeyFileError, match="label"):
        ks.generate_key_file(tmp_path / "b.key", PASS, "a\x00b", **FAST)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="non-empty"):
        ks.generate_key_file(tmp_path / "a.key", b"", "x", **FAST)
    with pytest.raises(KeyFileError, match="non-empty"):
        ks.generate_key_file(tmp_path / "a.key", "text", "x", **FAST)  # type: ignore[arg-type]
    with pytest.raises(KeyFileError, match="ops must be"):
        ks.generate_key_file(tmp_path / "a.key", PASS, "x", opslimit=0, memlimit=ks.MEMLIMIT_MIN)
    with pytest.raises(KeyFileError, match="seed"):
        ks.seal_seed(b"short", PASS, "x", **FAST)
    assert not (tmp_path / "a.key").exists()


def test_change_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    ks.write_key_file(path, nacl.signing.SigningKey(SEED), PASS, "lbl", **FAST)
    before = ks.read_key_file(path)
    ks.change_passphrase(path, PASS, b"new one")
    after = ks.read_key_file(path)
    assert after.salt != before.salt and after.label == "lbl" and after.opslimit == before.opslimit
    assert bytes(ks.load_signing_key(path, b"new one")) == SEED
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        ks.load_signing_key(path, PASS)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        ks.change_passphrase(path, PASS, b"third")
    with pytest.raises(KeyFileError, match="non-empty"):
        ks.change_passphrase(path, b"new one", b"")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_secret_in_reprs_or_errors(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    sk = nacl.signing.SigningKey(SEED)
    ks.write_key_file(path, sk, PASS, "x", **FAST)
    kf = ks.read_key_file(path)
    loaded = ks.load_signing_key(path, PASS)
    assert isinstance(loaded, nacl.signing.SigningKey)
    assert loaded.sign(b"m").signature == sk.sign(b"m").signature
    texts = [repr(kf), str(kf), repr(loaded), str(loaded), f"{loaded}", repr(loaded.verify_key)]
    errors: list[BaseException] = []
    for attempt in (lambda: ks.load_signing_key(path, b"bad"),
                    lambda: ks.write_key_file(path, sk, PASS, "x", **FAST),
                    lambda: ks.seal_seed(SEED, PASS, "\x07", **FAST),
                    lambda: ks.seal_seed(SEED, PASS, "x", salt=b"s", **FAST)):
        with pytest.raises(KeyFileError) as info:
            attempt()
        errors.append(info.value)
    for e in errors:
        texts.append(str(e))
        texts.append(repr(e))
        texts.extend(repr(a) for a in e.args)
    for text in texts:
        _seed_hex_absent(text)
        assert PASS.decode() not in text


def test_passphrase_from_env() -> None:
    assert ks.passphrase_from_env("P", {"P": "s3cret é"}) == "s3cret é".encode()
    with pytest.raises(KeyFileError, match="P holds no passphrase"):
        ks.passphrase_from_env("P", {})
    with pytest.raises(KeyFileError, match="no passphrase"):
        ks.passphrase_from_env("P", {"P": ""})
    with pytest.raises(KeyFileError, match="longer"):
        ks.passphrase_from_env("P", {"P": "x" * 5000})


@pytest.mark.parametrize("written,expected", [
    (b"pw\n", b"pw"), (b"pw", b"pw"), (b"pw\r\n", b"pw"), (b"pw\nrest", b"pw"), (b"a b\tc\n", b"a b\tc"),
], ids=["newline", "eof", "crlf", "first-line-only", "spaces"])
def test_passphrase_from_fd(written: bytes, expected: bytes) -> None:
    r, w = os.pipe()
    try:
        os.write(w, written)
        os.close(w)
        assert ks.passphrase_from_fd(r) == expected
    finally:
        os.close(r)


def test_passphrase_from_fd_errors() -> None:
    r, w = os.pipe()
    os.write(w, b"\n")
    os.close(w)
    with pytest.raises(KeyFileError, match="empty"):
        ks.passphrase_from_fd(r)
    os.close(r)
    with pytest.raises(KeyFileError, match="cannot read"):
        ks.passphrase_from_fd(-1)
    r, w = os.pipe()
    os.write(w, b"x" * 5000)
    os.close(w)
    with pytest.raises(KeyFileError, match="longer"):
        ks.passphrase_from_fd(r)
    os.close(r)
