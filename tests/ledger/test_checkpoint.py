"""C2SP checkpoints and cosignature/v1 (ledger/checkpoint.py, specs/04-notes.md 4.3-4.5).

Runs every applicable entry of tests/vectors/tlog_checkpoint.json and
tests/vectors/tlog_cosignature.json, then named negative cases and
hypothesis round trips.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    ALG_COSIGNATURE_V1,
    MAX_TIMESTAMP,
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointError,
    Cosignature,
    CosignatureSigner,
    CosignatureVerifier,
    add_signatures,
    cosignature_message,
    log_origin,
    open_checkpoint,
    parse_log_origin,
    sign_checkpoint,
    witness_name,
)
from ledger.errors import DecodeError, VerificationError
from ledger.note import (
    Note,
    NoteError,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_note,
)

_DIR = Path(__file__).parents[1] / "vectors"
_CP: Any = json.loads((_DIR / "tlog_checkpoint.json").read_text("utf-8"))
_CS: Any = json.loads((_DIR / "tlog_cosignature.json").read_text("utf-8"))
NOTE_CHECKPOINTS = [c for c in _CP["signed_checkpoints"] if "note" in c]
SUMDB = next(c for c in NOTE_CHECKPOINTS if c["desc"].startswith("Real sum.golang.org"))
SUMDB_MANY = next(c for c in NOTE_CHECKPOINTS if len(c["verifier_keys"]) > 1)
SOFA = next(c for c in NOTE_CHECKPOINTS if "behind-the-sofa" in c["desc"])
SIGSUM = next(c for c in _CP["signed_checkpoints"] if "public_key_ssh" in c)
DERIVED = _CS["derived_vectors"][0]


def _desc_id(v: dict[str, Any]) -> str:
    return str(v["desc"])


def _key(i: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"test key %d" % i).digest())


def _parsed(c: dict[str, Any]) -> Checkpoint:
    p = c["parsed"]
    return Checkpoint(p["origin"], p["tree_size"], bytes.fromhex(p["root_hash"]), tuple(p["extension_lines"]))


# --------------------------------------------------------------------------- checkpoint vectors


@pytest.mark.parametrize("c", NOTE_CHECKPOINTS, ids=_desc_id)
def test_checkpoint_note_parses(c: dict[str, Any]) -> None:
    note = Note.parse(c["note"].encode("utf-8"))
    assert note.text == c["note_text"] and note.text.encode().hex() == c["note_text_hex"]
    cp = Checkpoint.parse(note.text)
    assert cp == _parsed(c)
    assert cp.format() == c["note_text"]
    assert [(s.name, s.key_id.hex(), s.signature.hex()) for s in note.signatures] == [
        (s["key_name"], s["key_id"], s["signature"]) for s in c["signatures"]]


@pytest.mark.parametrize("c", [c for c in NOTE_CHECKPOINTS if c["signatures_verifiable"]], ids=_desc_id)
def test_checkpoint_vector_every_signature_verifies(c: dict[str, Any]) -> None:
    verifiers = [NoteVerifier.from_vkey(v["vkey"]) for v in c["verifier_keys"]]
    for v, want in zip(verifiers, c["verifier_keys"]):
        assert (v.key_id.hex(), v.public_key.hex()) == (want["key_id"], want["public_key"])
    note, verified = open_note(c["note"].encode("utf-8"), verifiers)
    assert len(verified) == len(c["signatures"]) == len(note.signatures)


def test_sumdb_checkpoint_opens() -> None:
    log = NoteVerifier.from_vkey(SUMDB["verifier_keys"][0]["vkey"])
    assert open_checkpoint(SUMDB["note"].encode("utf-8"), log) == (_parsed(SUMDB), {})
    # The extra test signatures are unknown keys to the log verifier, and ignored.
    assert open_checkpoint(SUMDB_MANY["note"].encode("utf-8"), log) == (_parsed(SUMDB), {})


def test_sofa_example_is_parse_only() -> None:
    # Its key id equals sum.golang.org's, but its name does not: an unknown key.
    log = NoteVerifier.from_vkey(SUMDB["verifier_keys"][0]["vkey"])
    with pytest.raises(VerificationError):
        open_checkpoint(SOFA["note"].encode("utf-8"), log)
    # Same id under the sofa's name: a known key whose signature fails.
    impostor = NoteVerifier(SOFA["parsed"]["origin"], log.public_key)
    with pytest.raises(VerificationError):
        open_checkpoint(SOFA["note"].encode("utf-8"), impostor)


def test_sigsum_tree_head_as_note() -> None:
    cp = Checkpoint.parse(SIGSUM["note_text"])
    assert cp == _parsed(SIGSUM)
    assert cp.origin == "sigsum.org/v1/tree/" + hashlib.sha256(bytes.fromhex(SIGSUM["public_key"])).hexdigest()
    ssh_blob = base64.b64decode(SIGSUM["public_key_ssh"].split()[1])
    assert ssh_blob.endswith(bytes.fromhex(SIGSUM["public_key"]))
    log = NoteVerifier(cp.origin, bytes.fromhex(SIGSUM["public_key"]))
    log.verify(SIGSUM["note_text"].encode(), bytes.fromhex(SIGSUM["signature"]))
    note = Note(cp.format(), (NoteSignature(log.name, log.key_id, bytes.fromhex(SIGSUM["signature"])),))
    assert open_checkpoint(note.to_bytes(), log) == (cp, {})


def test_record_hash_vector() -> None:
    v = _CP["record_hash_vector"]
    root = hashlib.sha256(b"\x00" + bytes.fromhex(v["leaf_input"])).digest()
    assert root.hex() == v["root_hash"]
    cp = Checkpoint("go.sum database tree", v["tree_size"], root)
    assert cp.format() == v["note_text"] and Checkpoint.parse(v["note_text"]) == cp


_ROOT32_B64 = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize("case", _CP["parse_vectors"]["cases"], ids=_desc_id)
def test_parse_vectors(case: dict[str, Any]) -> None:
    if case["want_error"]:
        with pytest.raises(CheckpointError):
            Checkpoint.parse(case["text"])
        return
    want = case["want"]
    if len(bytes.fromhex(want["root_hash"])) != 32:
        # The Go parser accepts any root length; a C2SP root is 32 bytes.
        with pytest.raises(CheckpointError, match="32 bytes"):
            Checkpoint.parse(case["text"])
    lines = case["text"].split("\n")
    lines[2] = _ROOT32_B64
    cp = Checkpoint.parse("\n".join(lines))
    assert (cp.origin, cp.size, cp.root_hash) == (want["origin"], want["tree_size"], bytes(range(32)))
    assert "".join(e + "\n" for e in cp.extensions) == case["want_rest"]


_R = _ROOT32_B64


@pytest.mark.parametrize("text", [
    pytest.param(f"o\n0123\n{_R}\n", id="leading-zero"),
    pytest.param(f"o\n00\n{_R}\n", id="double-zero"),
    pytest.param(f"o\n+5\n{_R}\n", id="plus-sign"),
    pytest.param(f"o\n 5\n{_R}\n", id="space-in-size"),
    pytest.param(f"o\n\u0661\u0662\n{_R}\n", id="arabic-indic-digits"),
    pytest.param(f"o\n{MAX_TREE_SIZE + 1}\n{_R}\n", id="size-2^64"),
    pytest.param(f"o\n1{'0' * 30}\n{_R}\n", id="size-huge"),
    pytest.param(f"o\n5\n{_R}", id="missing-final-newline"),
    pytest.param(f"o\r\n5\n{_R}\n", id="crlf"),
    pytest.param(f"o\n5\n{_R}\n\n", id="empty-last-line"),
    pytest.param(f"o\n5\n{_R}\n\next\n", id="empty-extension-line"),
    pytest.param(f"o\n5\n{base64.b64encode(bytes(31)).decode()}\n", id="root-31-bytes"),
    pytest.param(f"o\n5\n{base64.b64encode(bytes(33)).decode()}\n", id="root-33-bytes"),
    pytest.param(f"o\n5\n{_R.rstrip('=')}\n", id="root-unpadded"),
    pytest.param(f"o\n5\n{base64.urlsafe_b64encode(bytes([0xfb]) * 32).decode()}\n", id="root-urlsafe"),
    pytest.param(f"o\n5\n{_R[:-2]}9=\n", id="root-non-canonical"),
    pytest.param(f"o\x01\n5\n{_R}\n", id="control-in-origin"),
    pytest.param(f"o\n5\n{_R}\next\tx\n", id="control-in-extension"),
    pytest.param("", id="empty"),
])
def test_bad_checkpoint_text(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)


def test_size_bounds_and_extensions() -> None:
    cp = Checkpoint.parse(f"o\n{MAX_TREE_SIZE}\n{_R}\nfirst ext\n\u2014 second\n")
    assert cp.size == MAX_TREE_SIZE and cp.extensions == ("first ext", "\u2014 second")
    assert Checkpoint.parse(f"o\n0\n{_R}\n").size == 0
    bad_fields: list[dict[str, Any]] = [{"size": -1}, {"size": True}, {"root_hash": b"x"}, {"origin": ""},
                                        {"extensions": ["x"]}, {"extensions": ("a\nb",)}, {"extensions": ("",)}]
    for bad in bad_fields:
        with pytest.raises(CheckpointError):
            Checkpoint(**{"origin": "o", "size": 1, "root_hash": bytes(32), **bad})


def test_extension_lines_signed_and_cosigned() -> None:
    cp = Checkpoint(log_origin("gms", "VN"), 7, bytes(32), ("note: extensions are opaque",))
    log, witness = NoteSigner(cp.origin, _key(1)), CosignatureSigner(witness_name("gms", "TH"), _key(2))
    note = add_signatures(sign_checkpoint(cp, log), [witness.cosign(cp, 100)])
    assert note.text.endswith("\nnote: extensions are opaque\n")
    assert open_checkpoint(note.to_bytes(), log.verifier, [witness.verifier]) == (cp, {witness.name: 100})
    stripped = Note(Checkpoint(cp.origin, cp.size, cp.root_hash).format(), note.signatures)
    with pytest.raises(VerificationError):
        open_checkpoint(stripped.to_bytes(), log.verifier, [witness.verifier])


# --------------------------------------------------------------------------- cosignature vectors


@pytest.mark.parametrize("v", _CS["signed_message_vectors"], ids=_desc_id)
def test_cosignature_message_vectors(v: dict[str, Any]) -> None:
    msg = cosignature_message(v["checkpoint_body"], v["timestamp"])
    assert msg == v["signed_message"].encode() and msg.hex() == v["signed_message_hex"]
    assert cosignature_message(Checkpoint.parse(v["checkpoint_body"]).format(), v["timestamp"]) == msg


@pytest.mark.parametrize("v", _CS["signature_line_decoding_vectors"], ids=_desc_id)
def test_cosignature_line_decoding(v: dict[str, Any]) -> None:
    if "line" in v:
        sig = NoteSignature.parse_line(v["line"])
        assert sig.name == v["key_name"]
    else:
        blob = base64.b64decode(v["signature_b64"])
        sig = NoteSignature("cosigner.example", blob[:4], blob[4:])
    assert len(sig.key_id + sig.signature) == v["payload_len"]
    cosig = Cosignature.from_note_signature(sig)
    assert (cosig.key_id.hex(), cosig.timestamp, cosig.signature.hex()) == (
        v["key_id"], v["timestamp"], v["ed25519_signature"])
    assert cosig.to_note_signature() == sig


@pytest.mark.parametrize("v", _CS["vkeys"], ids=lambda v: v["key_name"])
def test_cosigner_vkeys(v: dict[str, Any]) -> None:
    pk = bytes.fromhex(v["public_key"])
    assert key_id(v["key_name"], bytes.fromhex(v["sig_type"]) + pk).hex() == v["key_id"]
    as_cosigner = CosignatureVerifier(v["key_name"], pk)
    assert as_cosigner.key_id == hashlib.sha256(v["key_name"].encode() + b"\n\x04" + pk).digest()[:4]
    if int(v["sig_type"], 16) == ALG_COSIGNATURE_V1:
        assert CosignatureVerifier.from_vkey(v["vkey"]) == as_cosigner
        assert as_cosigner.verifier_key == v["vkey"]
        with pytest.raises(NoteError):
            NoteVerifier.from_vkey(v["vkey"])
    else:
        # A type 0x01 key is not trusted as a cosigner key without configuration saying so.
        assert NoteVerifier.from_vkey(v["vkey"]).key_id.hex() == v["key_id"]
        with pytest.raises(NoteError):
            CosignatureVerifier.from_vkey(v["vkey"])


def test_derived_cosignature_reproduced_and_verified() -> None:
    signer = CosignatureSigner(DERIVED["cosigner_name"], nacl.signing.SigningKey(bytes.fromhex(DERIVED["ed25519_seed"])))
    assert signer.public_key.hex() == DERIVED["public_key"]
    assert signer.key_id.hex() == DERIVED["key_id"] and signer.verifier_key == DERIVED["vkey"]
    cp = Checkpoint.parse(DERIVED["checkpoint_body"])
    assert cosignature_message(cp.format(), DERIVED["timestamp"]).hex() == DERIVED["signed_message_hex"]
    sig = signer.cosign(cp, DERIVED["timestamp"])
    assert sig.line() == DERIVED["signature_line"]
    assert sig.signature[8:].hex() == DERIVED["ed25519_signature"]
    note = Note.parse(DERIVED["cosigned_note"].encode())
    verifier = CosignatureVerifier.from_vkey(DERIVED["vkey"])
    assert verifier.verify(cp, note.signatures[0]) == DERIVED["timestamp"]
    assert note == Note(cp.format(), (sig,))


# --------------------------------------------------------------------------- cosignature negatives

_CP1 = Checkpoint(log_origin("gms", "VN"), 10, hashlib.sha256(b"root").digest())
_LOG = NoteSigner(_CP1.origin, _key(0))
_W = [CosignatureSigner(witness_name("gms", m), _key(i + 1)) for i, m in enumerate(["TH", "LA", "KH"])]


def _cosigned(*sigs: NoteSignature) -> bytes:
    return add_signatures(sign_checkpoint(_CP1, _LOG), sigs).to_bytes()


def _resign(sig: NoteSignature, blob: bytes) -> NoteSignature:
    return NoteSignature(sig.name, sig.key_id, blob)


def test_open_checkpoint_with_cosignatures() -> None:
    data = _cosigned(_W[0].cosign(_CP1, 1000), _W[1].cosign(_CP1, 1001), _W[2].cosign(_CP1, 1002))
    cp, times = open_checkpoint(data, _LOG.verifier, [w.verifier for w in _W])
    assert cp == _CP1 and times == {_W[0].name: 1000, _W[1].name: 1001, _W[2].name: 1002}
    # Cosigners the caller does not know are ignored.
    assert open_checkpoint(data, _LOG.verifier, [_W[1].verifier])[1] == {_W[1].name: 1001}
    assert open_checkpoint(data, _LOG.verifier)[1] == {}


_GOOD_SIG = _W[0].cosign(_CP1, 1000)
COSIG_FAILURES = [
    pytest.param(_resign(_GOOD_SIG, (1001).to_bytes(8, "big") + _GOOD_SIG.signature[8:]), id="tampered-timestamp"),
    pytest.param(_resign(_GOOD_SIG, _GOOD_SIG.signature[:-1] + bytes([_GOOD_SIG.signature[-1] ^ 1])),
                 id="tampered-signature"),
    pytest.param(_resign(_GOOD_SIG, _GOOD_SIG.signature[:-1]), id="truncated"),
    pytest.param(_resign(_GOOD_SIG, _GOOD_SIG.signature + b"\x00"), id="trailing-garbage"),
    pytest.param(_resign(_GOOD_SIG, (1 << 63).to_bytes(8, "big") + _GOOD_SIG.signature[8:]),
                 id="timestamp-above-2^63-1"),
    pytest.param(_W[0].cosign(Checkpoint(_CP1.origin, 11, _CP1.root_hash), 1000), id="other-checkpoint"),
    pytest.param(_resign(_GOOD_SIG, _GOOD_SIG.signature[:8] + _LOG.signing_key.sign(
        cosignature_message(_CP1.format(), 1000)).signature), id="signed-by-other-key"),
]


@pytest.mark.parametrize("sig", COSIG_FAILURES)
def test_bad_cosignature_by_known_cosigner_rejected(sig: NoteSignature) -> None:
    with pytest.raises(VerificationError):
        _W[0].verifier.verify(_CP1, sig)
    with pytest.raises(VerificationError):
        open_checkpoint(_cosigned(sig, _W[1].cosign(_CP1, 5)), _LOG.verifier, [_W[0].verifier, _W[1].verifier])
    # Unknown to the caller: ignored.
    assert open_checkpoint(_cosigned(sig), _LOG.verifier, [_W[1].verifier])[1] == {}


def test_cosignature_checks_name_and_key_id() -> None:
    renamed = NoteSignature(_W[1].name, _GOOD_SIG.key_id, _GOOD_SIG.signature)
    with pytest.raises(VerificationError, match="not by cosigner"):
        _W[0].verifier.verify(_CP1, renamed)
    # Renamed lines are unknown keys to open_checkpoint, so they are ignored.
    assert open_checkpoint(_cosigned(renamed), _LOG.verifier, [w.verifier for w in _W])[1] == {}


@pytest.mark.parametrize("data", [
    pytest.param(_cosigned(_GOOD_SIG).replace(b"\n10\n", b"\n11\n"), id="tampered-size"),
    pytest.param(Note(_CP1.format(), (_GOOD_SIG,)).to_bytes(), id="no-log-signature"),
    pytest.param(add_signatures(sign_checkpoint(_CP1, NoteSigner(_CP1.origin, _key(9))), [_GOOD_SIG]).to_bytes(),
                 id="log-signature-by-other-key"),
])
def test_log_signature_required(data: bytes) -> None:
    with pytest.raises(VerificationError):
        open_checkpoint(data, _LOG.verifier, [_W[0].verifier])


@pytest.mark.parametrize("data", [
    pytest.param(_cosigned(_GOOD_SIG)[:-1], id="missing-final-newline"),
    pytest.param(_cosigned(_GOOD_SIG) + b"x", id="trailing-garbage"),
    pytest.param(_cosigned(_GOOD_SIG)[:-30], id="truncated"),
    pytest.param(_cosigned(_GOOD_SIG).replace(b"\n10\n", b"\n1\xff\n"), id="non-utf8"),
])
def test_malformed_cosigned_note(data: bytes) -> None:
    with pytest.raises(DecodeError):
        open_checkpoint(data, _LOG.verifier, [_W[0].verifier])


def test_log_signed_non_checkpoint_body() -> None:
    note = Note("just text\n", (_LOG.sign("just text\n"),))
    with pytest.raises(CheckpointError):
        open_checkpoint(note.to_bytes(), _LOG.verifier)


def test_one_key_for_log_and_cosigner() -> None:
    key = _key(42)
    name = log_origin("gms", "MM")
    log, cosigner = NoteSigner(name, key), CosignatureSigner(name, key)
    assert log.public_key == cosigner.public_key and log.key_id != cosigner.key_id
    assert log.verifier_key.split("+")[2][:1] == "A" and cosigner.verifier_key.split("+")[2][:1] == "B"
    cp = Checkpoint(name, 3, bytes(32))
    note = add_signatures(sign_checkpoint(cp, log), [cosigner.cosign(cp, 7), _W[0].cosign(cp, 8)])
    assert open_checkpoint(note.to_bytes(), log.verifier, [cosigner.verifier, _W[0].verifier]) == (
        cp, {name: 7, _W[0].name: 8})
    # The log line is no cosignature, and the cosignature line is no log signature.
    with pytest.raises(VerificationError):
        cosigner.verifier.verify(cp, NoteSignature(name, cosigner.key_id, note.signatures[0].signature))
    with pytest.raises(VerificationError):
        open_checkpoint(Note(note.text, note.signatures[1:]).to_bytes(), log.verifier)


def test_earliest_timestamp_kept_for_rotated_cosigner() -> None:
    old, new = CosignatureSigner("w.example/1", _key(5)), CosignatureSigner("w.example/1", _key(6))
    data = _cosigned(new.cosign(_CP1, 20), old.cosign(_CP1, 10))
    assert open_checkpoint(data, _LOG.verifier, [old.verifier, new.verifier])[1] == {"w.example/1": 10}


def test_timestamp_range() -> None:
    sig = _W[0].cosign(_CP1, MAX_TIMESTAMP)
    assert _W[0].verifier.verify(_CP1, sig) == MAX_TIMESTAMP
    assert _W[0].verifier.verify(_CP1, _W[0].cosign(_CP1, 0)) == 0
    for bad in (-1, MAX_TIMESTAMP + 1, True):
        with pytest.raises(CheckpointError):
            _W[0].cosign(_CP1, bad)
    with pytest.raises(CheckpointError):
        Cosignature.from_note_signature(_resign(sig, b"\xff" * 8 + sig.signature[8:]))


def test_add_signatures() -> None:
    note = sign_checkpoint(_CP1, _LOG)
    a, b = _W[0].cosign(_CP1, 1), _W[1].cosign(_CP1, 2)
    merged = add_signatures(note, [a, b, _W[0].cosign(_CP1, 3), note.signatures[0]])
    assert merged.signatures == (note.signatures[0], a, b)
    assert note.signatures == (note.signatures[0],)
    assert add_signatures(merged, [b, a]) == merged


def test_origin_convention() -> None:
    assert log_origin("gms", "VN") == "mekong-trust-ledger/gms/VN"
    assert witness_name("gms", "VN") == "mekong-trust-ledger/gms/VN/witness"
    assert parse_log_origin("mekong-trust-ledger/gms/VN") == ("gms", "VN")
    for net, member in (("", "VN"), ("gms", "V N"), ("gms/x", "VN"), ("gms", "VN+"), ("gms", "-VN")):
        with pytest.raises(ValueError):
            log_origin(net, member)
    for origin in ("mekong-trust-ledger/gms", "mekong/gms/VN", "mekong-trust-ledger/gms/VN/witness",
                   "mekong-trust-ledger//VN"):
        with pytest.raises(CheckpointError):
            parse_log_origin(origin)


# --------------------------------------------------------------------------- properties

_LINE = st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1, max_size=40)
_CHECKPOINTS = st.builds(Checkpoint, _LINE, st.integers(0, MAX_TREE_SIZE), st.binary(min_size=32, max_size=32),
                         st.lists(_LINE, max_size=3).map(tuple))


@given(_CHECKPOINTS)
def test_checkpoint_round_trip(cp: Checkpoint) -> None:
    text = cp.format()
    assert Checkpoint.parse(text) == cp
    assert Checkpoint.parse(text).format() == text


@settings(max_examples=40)
@given(_CHECKPOINTS, st.lists(st.integers(0, MAX_TIMESTAMP), min_size=1, max_size=3))
def test_sign_cosign_open(cp: Checkpoint, timestamps: list[int]) -> None:
    log = NoteSigner("log.example/x", _key(100))
    witnesses = _W[:len(timestamps)]
    note = add_signatures(sign_checkpoint(cp, log), [w.cosign(cp, t) for w, t in zip(witnesses, timestamps)])
    got, times = open_checkpoint(note.to_bytes(), log.verifier, [w.verifier for w in _W])
    assert got == cp
    assert times == {w.name: t for w, t in zip(witnesses, timestamps)}
    for sig in note.signatures[1:]:
        c = Cosignature.from_note_signature(sig)
        assert c.to_note_signature() == sig
