"""The seven credential profiles: what each attestation states (specs/credentials.md section 2).

Each profile is a frozen, slotted dataclass validated on construction, with
``to_map``/``from_map`` for its CBOR map form (text keys, the attribute
names). :data:`PROFILES` is the one table from profile name (the document type
used in issuer accreditations and recognition policies) to class.

The attestation claim of a credential (claim key ``-65537``, see
:mod:`credentials.cwt`) is ``{"type": <profile name>, <fields>...}``;
:func:`attestation_to_map` and :func:`attestation_from_map` convert it.

This module checks the shape and internal consistency of an attestation
only; whether its issuer may state it is the verifier's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from credentials.fields import (
    BOOL,
    COUNTRY,
    CURRENCY,
    DATE,
    DECIMAL,
    HS_CODE,
    KEY32,
    LOA,
    MINOR_UNITS,
    SHORT_TEXT,
    TEXT,
    Codec,
    Digest,
    Field,
    Money,
    Party,
    Quantity,
    Record,
    one_of,
    record,
    tuple_of,
)
from ledger.errors import DecodeError

__all__ = [
    "DOCUMENT_TYPE",
    "PROFILES",
    "AeoStatus",
    "AuthorisedSignatory",
    "CertificateOfOrigin",
    "CooItem",
    "CredentialRef",
    "CustomsDeclarationSummary",
    "DeclarationItem",
    "EInvoice",
    "LegalEntity",
    "PhytosanitaryCertificate",
    "Profile",
    "attestation_from_map",
    "attestation_to_map",
]

_LEI_RE = re.compile(r"[A-Z0-9]{18}[0-9]{2}")
_LOCODE_RE = re.compile(r"[A-Z]{2}[A-Z2-9]{3}")
_INCOTERM_RE = re.compile(r"[A-Z]{3}")
_DOCTYPE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def _pattern(pattern: re.Pattern[str], what: str) -> Codec:
    def check(v: Any, where: str) -> Any:
        if type(v) is not str or not pattern.fullmatch(v):
            raise DecodeError(f"{where}: expected {what}, got {v!r:.60}")
        return v
    return Codec(what, check)


def _cti_check(v: Any, where: str) -> Any:
    if type(v) is not bytes or not 1 <= len(v) <= 64:
        raise DecodeError(f"{where}: expected a credential id of 1 to 64 bytes")
    return v


LOCODE = _pattern(_LOCODE_RE, "a UN/LOCODE such as VNSGN")
INCOTERM = _pattern(_INCOTERM_RE, "an Incoterms 2020 code such as FOB")
DOCUMENT_TYPE_CODEC = _pattern(_DOCTYPE_RE, "a document type name")
CTI = Codec("credential id", _cti_check)


def _lei_checksum_ok(lei: str) -> bool:
    # ISO 17442 / ISO 7064 MOD 97-10: letters A..Z count as 10..35.
    return int("".join(str(int(c, 36)) for c in lei)) % 97 == 1


@dataclass(frozen=True, slots=True)
class LegalEntity(Record):
    """``legal-entity``: a registered business or body, as its register knows it."""

    TYPE: ClassVar[str] = "legal-entity"
    registered_id: str
    id_scheme: str
    legal_name: str
    jurisdiction: str
    registration_status: str
    loa: str

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("registered_id", SHORT_TEXT), Field("id_scheme", one_of("business-register", "tax-id", "lei")),
        Field("legal_name", TEXT), Field("jurisdiction", COUNTRY),
        Field("registration_status", one_of("active", "suspended", "dissolved")), Field("loa", LOA),
    )

    def _validate(self) -> None:
        if self.id_scheme == "lei" and not (_LEI_RE.fullmatch(self.registered_id)
                                            and _lei_checksum_ok(self.registered_id)):
            raise DecodeError(f"LegalEntity.registered_id: not a valid ISO 17442 LEI: {self.registered_id!r}")


@dataclass(frozen=True, slots=True)
class CredentialRef(Record):
    """A reference to another credential: its issuer, ``cti`` and SHA-256 of its bytes."""

    issuer: str
    cti: bytes
    digest: bytes

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("issuer", SHORT_TEXT), Field("cti", CTI),
        Field("digest", Codec("sha-256 digest", KEY32.check)),
    )


@dataclass(frozen=True, slots=True)
class AuthorisedSignatory(Record):
    """``authorised-signatory``: a person who may sign for a legal entity, and their public key.

    ``scope`` lists the document types the signatory may sign; None means any.
    """

    TYPE: ClassVar[str] = "authorised-signatory"
    person_name: str
    role: str
    legal_entity: CredentialRef
    signatory_key: bytes
    loa: str
    scope: tuple[str, ...] | None = None

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("person_name", TEXT), Field("role", TEXT), Field("legal_entity", record(CredentialRef)),
        Field("signatory_key", KEY32), Field("loa", LOA),
        Field("scope", tuple_of(DOCUMENT_TYPE_CODEC, min_len=1, max_len=64, unique=True), False),
    )


@dataclass(frozen=True, slots=True)
class CooItem(Record):
    """One line of a certificate of origin."""

    hs_code: str
    description: str
    origin_criterion: str
    quantity: Quantity
    fob_value: Money

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("hs_code", HS_CODE), Field("description", TEXT), Field("origin_criterion", SHORT_TEXT),
        Field("quantity", record(Quantity)), Field("fob_value", record(Money)),
    )


@dataclass(frozen=True, slots=True)
class CertificateOfOrigin(Record):
    """``certificate-of-origin``: a preferential certificate of origin under an ASEAN agreement."""

    TYPE: ClassVar[str] = "certificate-of-origin"
    certificate_number: str
    agreement: str
    issuing_body: Party
    exporting_country: str
    importing_country: str
    exporter: Party
    consignee: Party
    items: tuple[CooItem, ...]
    invoice_number: str
    invoice_date: str
    document_digest: Digest
    producer: Party | None = None
    issued_retroactively: bool = False
    back_to_back: bool = False
    third_party_invoicing: bool = False

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("certificate_number", SHORT_TEXT), Field("agreement", one_of("ATIGA", "ACFTA", "RCEP")),
        Field("issuing_body", record(Party)), Field("exporting_country", COUNTRY),
        Field("importing_country", COUNTRY), Field("exporter", record(Party)), Field("consignee", record(Party)),
        Field("items", tuple_of(record(CooItem), min_len=1, max_len=999)),
        Field("invoice_number", SHORT_TEXT), Field("invoice_date", DATE),
        Field("document_digest", record(Digest)), Field("producer", record(Party), False),
        Field("issued_retroactively", BOOL), Field("back_to_back", BOOL), Field("third_party_invoicing", BOOL),
    )

    def _validate(self) -> None:
        if self.exporting_country == self.importing_country:
            raise DecodeError("CertificateOfOrigin: exporting and importing country must differ")


@dataclass(frozen=True, slots=True)
class PhytosanitaryCertificate(Record):
    """``phytosanitary-certificate``: an IPPC phytosanitary or re-export certificate."""

    TYPE: ClassVar[str] = "phytosanitary-certificate"
    certificate_number: str
    certificate_type: str
    commodity: str
    quantity: Quantity
    origin_country: str
    destination_country: str
    issue_date: str
    document_digest: Digest
    botanical_name: str | None = None
    replaces: str | None = None

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("certificate_number", SHORT_TEXT), Field("certificate_type", one_of("phyto", "re-export")),
        Field("commodity", TEXT), Field("quantity", record(Quantity)), Field("origin_country", COUNTRY),
        Field("destination_country", COUNTRY), Field("issue_date", DATE), Field("document_digest", record(Digest)),
        Field("botanical_name", TEXT, False), Field("replaces", SHORT_TEXT, False),
    )

    def _validate(self) -> None:
        if self.replaces == self.certificate_number:
            raise DecodeError("PhytosanitaryCertificate.replaces: a certificate cannot replace itself")


@dataclass(frozen=True, slots=True)
class EInvoice(Record):
    """``e-invoice``: a tax-authority-registered electronic invoice; amounts in minor units of ``currency``."""

    TYPE: ClassVar[str] = "e-invoice"
    invoice_number: str
    issue_date: str
    seller_tax_id: str
    buyer_tax_id: str
    currency: str
    total_without_tax: int
    tax_total: int
    total_with_tax: int
    tax_authority_code: str
    document_digest: Digest

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("invoice_number", SHORT_TEXT), Field("issue_date", DATE), Field("seller_tax_id", SHORT_TEXT),
        Field("buyer_tax_id", SHORT_TEXT), Field("currency", CURRENCY), Field("total_without_tax", MINOR_UNITS),
        Field("tax_total", MINOR_UNITS), Field("total_with_tax", MINOR_UNITS),
        Field("tax_authority_code", SHORT_TEXT), Field("document_digest", record(Digest)),
    )

    def _validate(self) -> None:
        if self.total_without_tax + self.tax_total != self.total_with_tax:
            raise DecodeError("EInvoice: total_without_tax + tax_total must equal total_with_tax")


@dataclass(frozen=True, slots=True)
class AeoStatus(Record):
    """``aeo-status``: a trader's Authorised Economic Operator status and mutual recognition partners."""

    TYPE: ClassVar[str] = "aeo-status"
    trader_id: str
    administration: str
    programme: str
    status: str
    valid_from: str
    valid_until: str | None = None
    mra_partners: tuple[str, ...] = ()

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("trader_id", SHORT_TEXT), Field("administration", COUNTRY), Field("programme", TEXT),
        Field("status", one_of("certified", "suspended", "revoked")), Field("valid_from", DATE),
        Field("valid_until", DATE, False), Field("mra_partners", tuple_of(COUNTRY, max_len=250, unique=True)),
    )

    def _validate(self) -> None:
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise DecodeError("AeoStatus: valid_until is before valid_from")
        if self.administration in self.mra_partners:
            raise DecodeError("AeoStatus.mra_partners: must not list the administration itself")


@dataclass(frozen=True, slots=True)
class DeclarationItem(Record):
    """One goods item of an ASEAN Customs Declaration Document."""

    hs_code: str
    description: str
    origin_country: str
    quantity: Quantity
    customs_value: Money
    preference: str | None = None

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("hs_code", HS_CODE), Field("description", TEXT), Field("origin_country", COUNTRY),
        Field("quantity", record(Quantity)), Field("customs_value", record(Money)),
        Field("preference", SHORT_TEXT, False),
    )


@dataclass(frozen=True, slots=True)
class CustomsDeclarationSummary(Record):
    """``customs-declaration-summary``: the ASEAN Customs Declaration Document fields and its digest."""

    TYPE: ClassVar[str] = "customs-declaration-summary"
    declaration_number: str
    declaration_type: str
    declaration_date: str
    customs_office: str
    exporter: Party
    importer: Party
    transport_mode: str
    country_of_export: str
    country_of_destination: str
    invoice_number: str
    total_invoice_value: Money
    packages: int
    gross_mass: Quantity
    items: tuple[DeclarationItem, ...]
    document_digest: Digest
    declarant: Party | None = None
    port_of_loading: str | None = None
    port_of_discharge: str | None = None
    invoice_date: str | None = None
    delivery_terms: str | None = None
    exchange_rate: str | None = None

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("declaration_number", SHORT_TEXT), Field("declaration_type", one_of("export", "import", "transit")),
        Field("declaration_date", DATE), Field("customs_office", SHORT_TEXT), Field("exporter", record(Party)),
        Field("importer", record(Party)),
        Field("transport_mode", one_of("sea", "air", "road", "rail", "inland-waterway", "multimodal", "other")),
        Field("country_of_export", COUNTRY), Field("country_of_destination", COUNTRY),
        Field("invoice_number", SHORT_TEXT), Field("total_invoice_value", record(Money)),
        Field("packages", MINOR_UNITS), Field("gross_mass", record(Quantity)),
        Field("items", tuple_of(record(DeclarationItem), min_len=1, max_len=999)),
        Field("document_digest", record(Digest)), Field("declarant", record(Party), False),
        Field("port_of_loading", LOCODE, False), Field("port_of_discharge", LOCODE, False),
        Field("invoice_date", DATE, False), Field("delivery_terms", INCOTERM, False),
        Field("exchange_rate", DECIMAL, False),
    )


Profile = (LegalEntity | AuthorisedSignatory | CertificateOfOrigin | PhytosanitaryCertificate | EInvoice | AeoStatus
           | CustomsDeclarationSummary)

#: Profile name (document type) -> class. The one dispatch table; no import-time registration.
PROFILES: dict[str, type[Any]] = {
    cls.TYPE: cls for cls in (LegalEntity, AuthorisedSignatory, CertificateOfOrigin, PhytosanitaryCertificate,
                              EInvoice, AeoStatus, CustomsDeclarationSummary)
}

#: Key of the profile name inside the attestation map.
DOCUMENT_TYPE = "type"


def attestation_to_map(profile: Profile) -> dict[str, Any]:
    """The attestation claim value: ``{"type": name, **profile.to_map()}``."""
    out = profile.to_map()
    out[DOCUMENT_TYPE] = profile.TYPE
    return out


def attestation_from_map(m: Any) -> Profile:
    """Decode an attestation claim value into its profile object.

    Raises:
        DecodeError: not a map, no or unknown ``type``, or any field invalid.
    """
    if type(m) is not dict:
        raise DecodeError(f"attestation: expected a map, got {type(m).__name__}")
    name = m.get(DOCUMENT_TYPE)
    cls = PROFILES.get(name) if type(name) is str else None
    if cls is None:
        raise DecodeError(f"attestation: unknown or missing profile type {name!r:.60}")
    fields = dict(m)
    del fields[DOCUMENT_TYPE]
    result: Profile = cls.from_map(fields, name)
    return result
