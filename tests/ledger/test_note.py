"""C2SP signed notes (ledger/note.py, specs/04-notes.md sections 4.1, 4.2, 4.5.1).

Runs every applicable entry of tests/vectors/signed_note.json, then named
negative cases and hypothesis round trips.
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

from ledger.errors import DecodeError, VerificationError
from ledger.note import (
    ALG_ED25519,
    DEFAULT_MAX_SIGNATURES,
    Note,
    NoteError,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    decode_base64,
    format_vkey,
    is_valid_key_name,
    key_id,
    open_note,
    parse_vkey,
    sign_note,
    verify_note,
)

_V: Any = json.loads((Path(__file__).parents[1] / "vectors" / "signed_note.json").read_text("utf-8"))
NOTES = _V["signed_notes"]
VERIFIABLE = [n for n in NOTES if n["signatures_verifiable"]]
VKEYS = _V["verifier_keys"] + [
    {"vkey": kp["vkey"]} for kp in _V["key_pairs"] if kp["vkey"] not in {v["vkey"] for v in _V["verifier_keys"]}
]
PETER = next(n for n in NOTES if n["desc"].endswith("TestSign golden: PeterNeumann"))
TWO = next(n for n in NOTES if "EnochRoot" in n["desc"])
QUASIMODO = next(n for n in NOTES if "quasimodo" in n["desc"])
SKEYS = {k["key_name"]: k for k in _V["signer_keys"]}


def _desc_id(v: dict[str, Any]) -> str:
    return str(v["desc"])


def _signer(name: str) -> NoteSigner:
    return NoteSigner.from_skey(SKEYS[name]["skey"])


# --------------------------------------------------------------------------- key ids, vkeys, skeys


@pytest.mark.parametrize("v", _V["verifier_keys"], ids=lambda v: v["key_name"])
def test_key_id_vector(v: dict[str, Any]) -> None:
    alg_and_key = bytes.fromhex(v["sig_type"] + v["public_key"])
    assert key_id(v["key_name"], alg_and_key).hex() == v["key_id"]


@pytest.mark.parametrize("v", VKEYS, ids=lambda v: v["vkey"].split("+")[0])
def test_vkey_parses_and_reformats(v: dict[str, Any]) -> None:
    verifier = NoteVerifier.from_vkey(v["vkey"])
    name, kid, raw = parse_vkey(v["vkey"])
    assert (verifier.name, verifier.key_id, bytes([ALG_ED25519]) + verifier.public_key) == (name, kid, raw)
    if "public_key" in v:
        assert verifier.public_key.hex() == v["public_key"]
        assert verifier.key_id.hex() == v["key_id"]
    assert verifier.verifier_key == v["vkey"] == format_vkey(name, raw)


@pytest.mark.parametrize("v", _V["invalid_vkeys"], ids=lambda v: v["why"])
def test_invalid_vkey_rejected(v: dict[str, Any]) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.from_vkey(v["vkey"])


PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"


@pytest.mark.parametrize("vkey", [
    pytest.param("", id="empty"),
    pytest.param("PeterNeumann+c74f20a3", id="two-parts"),
    pytest.param("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="empty-name"),
    pytest.param("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="space-in-name"),
    pytest.param("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="uppercase-hex"),
    pytest.param("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="short-id"),
    pytest.param("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="wrong-id"),
    pytest.param("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW", id="urlsafe-base64"),
    pytest.param("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", id="bad-base64"),
    pytest.param("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW ", id="trailing-space"),
    pytest.param("PeterNeumann+c74f20a3+AQ==", id="alg-only"),
    pytest.param("PeterNeumann+" + key_id("PeterNeumann", b"\x04" + bytes(32)).hex() + "+"
                 + base64.b64encode(b"\x04" + bytes(32)).decode(), id="cosignature-type"),
])
def test_bad_vkey_rejected(vkey: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.from_vkey(vkey)


@pytest.mark.parametrize("k", _V["signer_keys"], ids=lambda k: k["key_name"])
def test_skey_vector(k: dict[str, Any]) -> None:
    signer = NoteSigner.from_skey(k["skey"])
    assert signer.name == k["key_name"]
    assert signer.key_id.hex() == k["key_id"]
    assert bytes(signer.signing_key).hex() == k["ed25519_seed"]
    assert signer.to_skey() == k["skey"]
    assert k["ed25519_seed"] not in repr(signer)


@pytest.mark.parametrize("kp", _V["key_pairs"], ids=lambda kp: kp["vkey"].split("+")[0])
def test_skey_derives_vkey(kp: dict[str, Any]) -> None:
    signer = NoteSigner.from_skey(kp["skey"])
    assert signer.verifier_key == kp["vkey"]
    assert signer.verifier == NoteVerifier.from_vkey(kp["vkey"])


@pytest.mark.parametrize("skey", [
    pytest.param(SKEYS["PeterNeumann"]["skey"].replace("PRIVATE+KEY+", "PRIVATE+KEYS+"), id="bad-prefix"),
    pytest.param(SKEYS["PeterNeumann"]["skey"].replace("c74f20a3", "c74f20a4"), id="wrong-id"),
    pytest.param(SKEYS["PeterNeumann"]["skey"].replace("+AYEK", "+BYEK"), id="wrong-type"),
    pytest.param(SKEYS["PeterNeumann"]["skey"][:-4], id="truncated"),
    pytest.param(PETER_VKEY, id="a-vkey"),
])
def test_bad_skey_rejected(skey: str) -> None:
    with pytest.raises(NoteError) as exc:
        NoteSigner.from_skey(skey)
    assert SKEYS["PeterNeumann"]["skey"].rsplit("+", 1)[1][4:] not in str(exc.value)


# --------------------------------------------------------------------------- parsing and verifying vectors


@pytest.mark.parametrize("n", NOTES, ids=_desc_id)
def test_parse_vector_note(n: dict[str, Any]) -> None:
    note = Note.parse(n["note"].encode("utf-8"))
    assert note.text == n["note_text"]
    assert note.text.encode("utf-8").hex() == n["note_text_hex"]
    assert [(s.name, s.key_id.hex(), s.signature.hex()) for s in note.signatures] == [
        (s["key_name"], s["key_id"], s["signature"]) for s in n["signatures"]]
    assert [s.line() for s in note.signatures] == [
        f"\u2014 {s['key_name']} {s['signature_b64']}" for s in n["signatures"]]
    assert note.to_bytes() == n["note"].encode("utf-8")
    assert Note.parse(n["note"]) == note


@pytest.mark.parametrize("n", VERIFIABLE, ids=_desc_id)
def test_open_vector_note(n: dict[str, Any]) -> None:
    verifiers = [NoteVerifier.from_vkey(v) for v in n["verifier_keys"]]
    note, verified = open_note(n["note"].encode("utf-8"), verifiers)
    assert verified == note.signatures
    assert len(verified) == len(n["signatures"])


@pytest.mark.parametrize("n,i", [(n, i) for n in VERIFIABLE for i in range(len(n["signatures"]))],
                         ids=[f"{n['desc']}/{s['key_name']}" for n in VERIFIABLE for s in n["signatures"]])
def test_every_vector_signature_verifies(n: dict[str, Any], i: int) -> None:
    sig = n["signatures"][i]
    verifier = next(v for v in map(NoteVerifier.from_vkey, n["verifier_keys"]) if v.name == sig["key_name"])
    verifier.verify(n["note_text"].encode("utf-8"), bytes.fromhex(sig["signature"]))
    with pytest.raises(VerificationError):
        verifier.verify(n["note_text"].encode("utf-8") + b"x", bytes.fromhex(sig["signature"]))


def test_peter_golden_signature_reproduced() -> None:
    signer = _signer("PeterNeumann")
    sig = signer.sign(PETER["note_text"])
    assert sig.signature.hex() == PETER["signatures"][0]["signature"]
    assert sign_note(PETER["note_text"], [signer]).to_bytes() == PETER["note"].encode("utf-8")


def test_two_signatures_each_key_alone() -> None:
    data = TWO["note"].encode("utf-8")
    peter, enoch = (NoteVerifier.from_vkey(v) for v in TWO["verifier_keys"])
    assert [s.name for s in open_note(data, [peter])[1]] == ["PeterNeumann"]
    assert [s.name for s in open_note(data, [enoch])[1]] == ["EnochRoot"]
    assert [s.name for s in open_note(data, [enoch, peter])[1]] == ["PeterNeumann", "EnochRoot"]


def test_unknown_signatures_ignored() -> None:
    known, unknown = _signer("Known"), _signer("Unknown")
    note = sign_note("Hello\n", [unknown, known, _signer("KnownAgain")])
    got, verified = open_note(note.to_bytes(), [known.verifier, _signer("KnownAgain").verifier])
    assert got == note
    assert [s.name for s in verified] == ["Known", "KnownAgain"]


def test_same_name_other_key_is_unknown() -> None:
    # C2SP: a signature matching a known key's name but not its id is ignored.
    note = sign_note("Hello\n", [_signer("Known")])
    impostor = NoteSigner("Known", nacl.signing.SigningKey(bytes(range(32))))
    with pytest.raises(VerificationError, match="any known key"):
        open_note(note.to_bytes(), [impostor.verifier])


def test_quasimodo_parse_only() -> None:
    note = Note.parse(QUASIMODO["note"].encode("utf-8"))
    assert note.text.count("\n\n") == 1  # the text's own blank line stays in the text
    with pytest.raises(VerificationError):
        open_note(QUASIMODO["note"].encode("utf-8"), [NoteVerifier.from_vkey(PETER_VKEY)])


# --------------------------------------------------------------------------- negative cases

_GOOD = PETER["note"].encode("utf-8")
_SIG_B64 = PETER["signatures"][0]["signature_b64"]
_FLIPPED = base64.b64encode(bytes([base64.b64decode(_SIG_B64)[0]]) + bytes(
    b ^ (1 if i == 10 else 0) for i, b in enumerate(base64.b64decode(_SIG_B64)[1:]))).decode()

VERIFY_FAILURES = [
    pytest.param(_GOOD.replace(b"cryptography", b"cryptographY"), id="tampered-text"),
    pytest.param(_GOOD.replace(_SIG_B64.encode(), _FLIPPED.encode()), id="tampered-signature"),
    pytest.param(_GOOD.replace(b"\xe2\x80\x94 PeterNeumann", b"\xe2\x80\x94 PeterNeuman"), id="wrong-key-name"),
    pytest.param(_GOOD.replace(b"x08go", b"x08gp"), id="wrong-key-id"),
    pytest.param(_GOOD.replace(b"answer", b"answer\n"), id="text-grew-a-line"),
]

PARSE_FAILURES = [
    pytest.param(_GOOD[:-1], id="missing-final-newline"),
    pytest.param(_GOOD[:-20], id="truncated-signature"),
    pytest.param(_GOOD[:len(PETER["note_text"])], id="truncated-to-text"),
    pytest.param(_GOOD[:len(PETER["note_text"]) + 1], id="no-signatures"),
    pytest.param(_GOOD + b"garbage", id="trailing-garbage"),
    pytest.param(_GOOD + b"garbage\n", id="trailing-garbage-line"),
    pytest.param(_GOOD + b"\n", id="trailing-blank-line"),
    pytest.param(_GOOD.replace(b"If you", b"If \xffyou"), id="non-utf8"),
    pytest.param(_GOOD.replace(b"If you", b"If \xc0\xa0you"), id="overlong-utf8"),
    pytest.param(_GOOD.replace(b"If you", b"If \xed\xa0\x80you"), id="utf8-surrogate"),
    pytest.param(_GOOD.replace(b"If you", b"If\tyou"), id="control-tab"),
    pytest.param(_GOOD.replace(b"problem,\n", b"problem,\r\n"), id="control-cr"),
    pytest.param(_GOOD.replace(b"\n\n", b"\n"), id="no-blank-line"),
    pytest.param(_GOOD.replace(b"\xe2\x80\x94 ", b"- "), id="hyphen-not-em-dash"),
    pytest.param(_GOOD.replace(b"\xe2\x80\x94 ", b"\xe2\x80\x94"), id="no-space-after-dash"),
    pytest.param(_GOOD.replace(b"PeterNeumann ", b"PeterNeumann  "), id="double-space"),
    pytest.param(_GOOD.replace(b"PeterNeumann ", b"Peter+Neumann "), id="plus-in-name"),
    pytest.param(_GOOD.replace(b"PeterNeumann ", b"PeterNeumann"), id="no-signature"),
    pytest.param(_GOOD.replace(b"AM=\n", b"AM\n"), id="unpadded-base64"),
    pytest.param(_GOOD.replace(b"AM=\n", b"AN=\n"), id="non-canonical-base64"),
    pytest.param(_GOOD.replace(b"x08go/", b"x08go_"), id="urlsafe-base64"),
    pytest.param(_GOOD.replace(_SIG_B64.encode(), b"AAAAAA=="), id="signature-too-short"),
    pytest.param(_GOOD + b"\xe2\x80\x94 PeterNeumann " + _SIG_B64.encode() + b"\n", id="duplicate-signature"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\n\n", id="only-blank-line"),
]


@pytest.mark.parametrize("data", VERIFY_FAILURES)
def test_verification_failures(data: bytes) -> None:
    Note.parse(data)
    with pytest.raises(VerificationError):
        open_note(data, [NoteVerifier.from_vkey(PETER_VKEY)])


@pytest.mark.parametrize("data", PARSE_FAILURES)
def test_parse_failures(data: bytes) -> None:
    with pytest.raises(NoteError):
        Note.parse(data)
    with pytest.raises(DecodeError):
        open_note(data, [NoteVerifier.from_vkey(PETER_VKEY)])


def test_limits() -> None:
    signers = [NoteSigner(f"k{i}", nacl.signing.SigningKey(bytes([i]) * 32)) for i in range(17)]
    data = sign_note("many\n", signers).to_bytes()
    assert len(Note.parse(data, max_signatures=17).signatures) == 17
    with pytest.raises(NoteError, match="more than 16"):
        Note.parse(data, max_signatures=16)
    with pytest.raises(NoteError, match="larger than"):
        Note.parse(data, max_size=len(data) - 1)
    assert DEFAULT_MAX_SIGNATURES >= 16  # C2SP floor


def test_bad_signature_by_known_key_rejects_whole_note() -> None:
    peter = _signer("PeterNeumann")
    good = sign_note("text\n", [_signer("Known")])
    bad = NoteSignature(peter.name, peter.key_id, bytes(64))
    data = Note(good.text, (*good.signatures, bad)).to_bytes()
    with pytest.raises(VerificationError, match="PeterNeumann"):
        open_note(data, [_signer("Known").verifier, peter.verifier])


def test_conflicting_verifiers_refused() -> None:
    v = NoteVerifier.from_vkey(PETER_VKEY)
    open_note(_GOOD, [v, v])  # the same key twice is fine
    fake = NoteVerifier.__new__(NoteVerifier)
    for attr, val in (("name", v.name), ("public_key", bytes(32)), ("key_id", v.key_id)):
        object.__setattr__(fake, attr, val)
    with pytest.raises(ValueError):
        verify_note(Note.parse(_GOOD), [v, fake])


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"), pytest.param("no newline", id="no-newline"),
    pytest.param("bell\a\n", id="control"), pytest.param("lone \ud800\n", id="surrogate"),
])
def test_bad_note_text_refused(text: str) -> None:
    with pytest.raises(NoteError):
        _signer("Known").sign(text)
    with pytest.raises(NoteError):
        Note(text, (NoteSignature("a", b"abcd", b"x"),))


def test_signer_refuses_cosignature_shaped_text() -> None:
    with pytest.raises(ValueError, match="cosignature"):
        _signer("Known").sign("cosignature/v1\ntime 1\norigin\n1\nAAAA\n")


def test_note_object_validation() -> None:
    sig = NoteSignature("a", b"abcd", b"x")
    with pytest.raises(NoteError):
        Note("t\n", ())
    with pytest.raises(NoteError):
        Note("t\n", (sig, sig))
    with pytest.raises(NoteError):
        NoteSignature("a", b"abc", b"x")
    with pytest.raises(NoteError):
        NoteSignature("a", b"abcd", b"")
    with pytest.raises(NoteError):
        NoteSigner("bad name", nacl.signing.SigningKey(bytes(32)))
    with pytest.raises(TypeError):
        NoteSigner("a", bytes(32))  # type: ignore[arg-type]
    with pytest.raises(NoteError):
        NoteVerifier("a", bytes(31))
    with pytest.raises(NoteError):
        sign_note("t\n", [])


@pytest.mark.parametrize("name,ok", [
    ("example.com/foo", True), ("oid/1.3.6.1.4.1", True), ("\u2014", True), ("", False),
    ("a b", False), ("a+b", False), ("a\u00a0b", False), ("a\u3000b", False), ("a\u2028b", False),
    ("a\tb", False), ("a\nb", False), ("a\ud800", False),
])
def test_key_names(name: str, ok: bool) -> None:
    assert is_valid_key_name(name) is ok


@pytest.mark.parametrize("s", ["YQ=", "YR==", "YQ", " YQ==", "YQ==\n", "Y\u00e9==", "YQ==YQ=="])
def test_base64_strict(s: str) -> None:
    with pytest.raises(NoteError):
        decode_base64(s, "test")


# --------------------------------------------------------------------------- properties

_TEXT_CHARS = st.characters(min_codepoint=0x20, exclude_categories=["Cs"])
_LINE = st.text(_TEXT_CHARS, max_size=30)
_NOTE_TEXT = st.lists(_LINE, min_size=1, max_size=6).map(lambda ls: "\n".join(ls) + "\n")
_NAME = st.text(st.characters(min_codepoint=0x21, exclude_categories=["Cs", "Zs", "Zl", "Zp"],
                              exclude_characters="+\x85"), min_size=1, max_size=20)
_SIG = st.builds(NoteSignature, _NAME, st.binary(min_size=4, max_size=4), st.binary(min_size=1, max_size=80))


@given(_NOTE_TEXT, st.lists(_SIG, min_size=1, max_size=5, unique_by=lambda s: (s.name, s.key_id)))
def test_note_round_trip(text: str, sigs: list[NoteSignature]) -> None:
    note = Note(text, tuple(sigs))
    data = note.to_bytes()
    assert Note.parse(data) == note
    assert Note.parse(data).to_bytes() == data


@settings(max_examples=50)
@given(_NOTE_TEXT, st.lists(st.tuples(_NAME, st.binary(min_size=32, max_size=32)), min_size=1, max_size=3,
                            unique_by=lambda t: t[0]))
def test_sign_then_open(text: str, keys: list[tuple[str, bytes]]) -> None:
    if text.startswith("cosignature/v1\n"):
        return
    signers = [NoteSigner(name, nacl.signing.SigningKey(seed)) for name, seed in keys]
    note = sign_note(text, signers)
    got, verified = open_note(note.to_bytes(), [s.verifier for s in signers])
    assert got == note and verified == note.signatures
    assert got.text == text
    vkey = signers[0].verifier_key
    assert NoteVerifier.from_vkey(vkey) == signers[0].verifier
    assert key_id(signers[0].name, b"\x01" + signers[0].public_key) == hashlib.sha256(
        signers[0].name.encode() + b"\n\x01" + signers[0].public_key).digest()[:4]
