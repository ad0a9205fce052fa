"""Profiles: round trips, required fields, value checks, no floats."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from cred_helpers import DIGEST, SAMPLES, aeo_status, certificate_of_origin, e_invoice, legal_entity, phyto, signatory

from credentials.fields import Digest, Money, Party, Quantity
from credentials.profiles import PROFILES, CredentialRef, attestation_from_map, attestation_to_map
from ledger import cbor
from ledger.errors import DecodeError


def all_samples() -> list[Any]:
    out = [f() for f in SAMPLES.values()]
    out.append(signatory(b"entity", b"k" * 32, cti=b"c" * 16, scope=("e-invoice",)))
    return out


@pytest.mark.parametrize("profile", all_samples(), ids=lambda p: p.TYPE)
def test_round_trip_through_deterministic_cbor(profile: Any) -> None:
    m = attestation_to_map(profile)
    assert m["type"] == profile.TYPE
    data = cbor.encode(m)
    assert attestation_from_map(cbor.decode(data)) == profile
    assert cbor.encode(attestation_to_map(attestation_from_map(cbor.decode(data)))) == data


def test_every_profile_has_a_sample() -> None:
    assert {p.TYPE for p in all_samples()} == set(PROFILES)
    assert set(PROFILES) == {"legal-entity", "authorised-signatory", "certificate-of-origin",
                             "phytosanitary-certificate", "e-invoice", "aeo-status", "customs-declaration-summary"}


@pytest.mark.parametrize("profile", all_samples(), ids=lambda p: p.TYPE)
def test_every_required_field_is_required(profile: Any) -> None:
    m = attestation_to_map(profile)
    for f in type(profile).SCHEMA:
        if f.required and not any(d.name == f.key and d.default is not dataclasses.MISSING
                                  for d in dataclasses.fields(profile)):
            broken = {k: v for k, v in m.items() if k != f.key}
            with pytest.raises(DecodeError, match=f"missing required field.*{f.key}"):
                attestation_from_map(broken)


@pytest.mark.parametrize("profile", all_samples(), ids=lambda p: p.TYPE)
def test_no_floats_anywhere(profile: Any) -> None:
    def walk(v: Any) -> None:
        assert not isinstance(v, float)
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(attestation_to_map(profile))
    m = attestation_to_map(profile)
    key = next(f.key for f in type(profile).SCHEMA if f.required and isinstance(m.get(f.key), (int, str)))
    with pytest.raises(DecodeError):
        attestation_from_map({**m, key: 1.5})


BAD_CASES = [
    ("unknown-type", lambda m: {**m, "type": "passport"}, "unknown or missing profile type"),
    ("no-type", lambda m: {k: v for k, v in m.items() if k != "type"}, "unknown or missing profile type"),
    ("unknown-field", lambda m: {**m, "colour": "red"}, "unknown field 'colour'"),
    ("null-field", lambda m: {**m, "invoice_number": None}, "null is not allowed"),
    ("wrong-agreement", lambda m: {**m, "agreement": "NAFTA"}, "expected one of ATIGA, ACFTA, RCEP"),
    ("bad-country", lambda m: {**m, "exporting_country": "vn"}, "ISO 3166-1"),
    ("same-countries", lambda m: {**m, "importing_country": "VN"}, "must differ"),
    ("bad-date", lambda m: {**m, "invoice_date": "2024-02-30"}, "not a calendar date"),
    ("no-items", lambda m: {**m, "items": []}, "expected 1 to 999 elements"),
    ("items-not-array", lambda m: {**m, "items": {}}, "expected an array"),
    ("item-not-map", lambda m: {**m, "items": [m["items"][0], "x"]}, r"CertificateOfOrigin\.items\[1\]: expected a map"),
    ("bad-hs", lambda m: {**m, "items": [{**m["items"][0], "hs_code": "1006.30"}]}, "HS code"),
    ("float-money", lambda m: {**m, "items": [{**m["items"][0], "fob_value": {"amount": 12.5, "currency": "USD"}}]},
     "unsigned integer"),
    ("negative-money", lambda m: {**m, "items": [{**m["items"][0], "fob_value": {"amount": -1, "currency": "USD"}}]},
     "unsigned integer"),
    ("bad-quantity", lambda m: {**m, "items": [{**m["items"][0], "quantity": {"value": "1e3", "unit": "KGM"}}]},
     "decimal string"),
    ("short-digest", lambda m: {**m, "document_digest": {"alg": "sha-256", "value": b"\x00" * 31}}, "32 bytes"),
    ("flag-not-bool", lambda m: {**m, "back_to_back": 1}, "true or false"),
    ("control-chars", lambda m: {**m, "invoice_number": "INV\n1"}, "control characters"),
    ("long-text", lambda m: {**m, "invoice_number": "x" * 65}, "1 to 64 characters"),
]


@pytest.mark.parametrize(("mutate", "message"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_invalid_certificate_of_origin(mutate: Any, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        attestation_from_map(mutate(attestation_to_map(certificate_of_origin())))


def test_cross_field_rules() -> None:
    with pytest.raises(DecodeError, match="total_with_tax"):
        e_invoice(tax_total=1)
    with pytest.raises(DecodeError, match="LEI"):
        legal_entity(id_scheme="lei", registered_id="5493001KJTIIGC8Y1R11")
    assert legal_entity(id_scheme="lei", registered_id="5493001KJTIIGC8Y1R12").id_scheme == "lei"
    with pytest.raises(DecodeError, match="before valid_from"):
        aeo_status(valid_until="2023-12-31")
    with pytest.raises(DecodeError, match="administration itself"):
        aeo_status(mra_partners=("VN",))
    with pytest.raises(DecodeError, match="unique"):
        aeo_status(mra_partners=("TH", "TH"))
    with pytest.raises(DecodeError, match="replace itself"):
        phyto(replaces="TH-PC-9981")
    assert phyto(certificate_type="re-export", replaces="TH-PC-9000").replaces == "TH-PC-9000"
    with pytest.raises(DecodeError, match="32 bytes"):
        signatory(b"e", b"short", cti=b"c")
    with pytest.raises(DecodeError, match="credential id"):
        CredentialRef("VN/x", b"", DIGEST.value)


def test_value_types() -> None:
    assert Money(0, "VND").to_map() == {"amount": 0, "currency": "VND"}
    assert Quantity("0.125", "TNE").value == "0.125"
    for bad in ("01", "1.", ".5", "-1", "1,5", "NaN"):
        with pytest.raises(DecodeError):
            Quantity(bad, "KGM")
    with pytest.raises(DecodeError):
        Money(True, "USD")  # bools are not amounts
    with pytest.raises(DecodeError):
        Digest("sha-512", b"\x00" * 32)
    assert Party("A", "VN", address="1 Le Loi").to_map() == {"name": "A", "country": "VN", "address": "1 Le Loi"}
    with pytest.raises(DecodeError, match="Party.name: is required"):
        Party(None, "VN")  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="expected a map"):
        Party.from_map(["A", "VN"])
