"""Helpers for the credential tests: a sandbox network with real entries and checkpoints, sample profiles."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from credentials.fields import Digest, Money, Party, Quantity
from credentials.profiles import (
    AeoStatus,
    AuthorisedSignatory,
    CertificateOfOrigin,
    CooItem,
    CredentialRef,
    CustomsDeclarationSummary,
    DeclarationItem,
    EInvoice,
    LegalEntity,
    PhytosanitaryCertificate,
)
from credentials.sandbox import Sandbox

#: Genesis time of every sandbox; tests count from here.
T0 = 1_700_000_000
DAY = 86400

DOC = b"<Invoice>rice, 20 t</Invoice>"
DIGEST = Digest("sha-256", hashlib.sha256(DOC).digest())


def legal_entity(**kw: Any) -> LegalEntity:
    base: dict[str, Any] = {"registered_id": "0312345678", "id_scheme": "tax-id", "legal_name": "Mekong Rice Co., Ltd",
                                "jurisdiction": "VN", "registration_status": "active", "loa": "substantial"}
    base.update(kw)
    return LegalEntity(**base)


def certificate_of_origin(**kw: Any) -> CertificateOfOrigin:
    base: dict[str, Any] = {
        "certificate_number": "VN-TH-2024-000123", "agreement": "ATIGA", "issuing_body": Party("VCCI Ho Chi Minh", "VN"),
        "exporting_country": "VN", "importing_country": "TH", "exporter": Party("Mekong Rice Co., Ltd", "VN", "0312345678"),
        "consignee": Party("Bangkok Foods PCL", "TH"),
        "items": (CooItem("100630", "Jasmine rice, milled", "WO", Quantity("20000", "KGM"), Money(1240000, "USD")),),
        "invoice_number": "INV-2024-77", "invoice_date": "2024-03-01", "document_digest": DIGEST}
    base.update(kw)
    return CertificateOfOrigin(**base)


def phyto(**kw: Any) -> PhytosanitaryCertificate:
    base: dict[str, Any] = {"certificate_number": "TH-PC-9981", "certificate_type": "phyto", "commodity": "Fresh durian",
                                "quantity": Quantity("12.5", "TNE"), "origin_country": "TH", "destination_country": "CN",
                                "issue_date": "2024-05-02", "document_digest": DIGEST, "botanical_name": "Durio zibethinus"}
    base.update(kw)
    return PhytosanitaryCertificate(**base)


def e_invoice(**kw: Any) -> EInvoice:
    base: dict[str, Any] = {"invoice_number": "C24TAA-0000123", "issue_date": "2024-03-01", "seller_tax_id": "0312345678",
                                "buyer_tax_id": "0105987432", "currency": "VND", "total_without_tax": 100_000_000,
                                "tax_total": 8_000_000, "total_with_tax": 108_000_000, "tax_authority_code": "GDT-9F3A21",
                                "document_digest": DIGEST}
    base.update(kw)
    return EInvoice(**base)


def aeo_status(**kw: Any) -> AeoStatus:
    base: dict[str, Any] = {"trader_id": "0312345678", "administration": "VN", "programme": "Viet Nam AEO programme",
                                "status": "certified", "valid_from": "2024-01-01", "valid_until": "2026-12-31",
                                "mra_partners": ("TH", "KH")}
    base.update(kw)
    return AeoStatus(**base)


def declaration(**kw: Any) -> CustomsDeclarationSummary:
    base: dict[str, Any] = {
        "declaration_number": "305123456789", "declaration_type": "export", "declaration_date": "2024-03-02",
        "customs_office": "02CI", "exporter": Party("Mekong Rice Co., Ltd", "VN"), "importer": Party("Bangkok Foods", "TH"),
        "transport_mode": "sea", "country_of_export": "VN", "country_of_destination": "TH", "invoice_number": "INV-2024-77",
        "total_invoice_value": Money(1240000, "USD"), "packages": 400, "gross_mass": Quantity("20100.5", "KGM"),
        "items": (DeclarationItem("100630", "Jasmine rice", "VN", Quantity("20000", "KGM"), Money(1240000, "USD"),
                               "ATIGA"),),
        "document_digest": DIGEST, "port_of_loading": "VNSGN", "port_of_discharge": "THLCH", "delivery_terms": "FOB",
        "exchange_rate": "24500.5"}
    base.update(kw)
    return CustomsDeclarationSummary(**base)


def signatory(entity_credential: bytes, key_pub: bytes, *, cti: bytes, issuer: str = "VN/business-registry",
              **kw: Any) -> AuthorisedSignatory:
    base: dict[str, Any] = {"person_name": "Nguyen Van An", "role": "Chief Accountant",
                                "legal_entity": CredentialRef(issuer, cti, hashlib.sha256(entity_credential).digest()),
                                "signatory_key": key_pub, "loa": "substantial"}
    base.update(kw)
    return AuthorisedSignatory(**base)


#: One sample of every profile, by profile name.
SAMPLES: dict[str, Callable[..., Any]] = {
    "legal-entity": legal_entity, "certificate-of-origin": certificate_of_origin,
    "phytosanitary-certificate": phyto, "e-invoice": e_invoice, "aeo-status": aeo_status,
    "customs-declaration-summary": declaration,
}


class Net:
    """A sandbox with a few registered issuers and keys, and policies, finalized at T0 + 100.

    Issuers: ``VN/customs`` (certificate-of-origin, aeo-status, customs-declaration-summary; high),
    ``VN/business-registry`` (legal-entity, authorised-signatory; substantial), ``TH/doa``
    (phytosanitary-certificate; high), ``KH/gdt`` (e-invoice; low).
    Policies: TH recognises VN for certificate-of-origin and legal-entity/authorised-signatory at
    substantial; CN recognises everyone for everything at high; KH publishes none.
    """

    def __init__(self) -> None:
        sb = self.sb = Sandbox(seed="tests")
        t = T0 + 10
        sb.register_issuer("VN/customs", ["certificate-of-origin", "aeo-status", "customs-declaration-summary"],
                           "high", t)
        sb.register_issuer("VN/business-registry", ["legal-entity", "authorised-signatory", "e-invoice"],
                           "substantial", t)
        sb.register_issuer("TH/doa", ["phytosanitary-certificate"], "high", t)
        sb.register_issuer("KH/gdt", ["e-invoice"], "low", t)
        self.keys = {
            "VN/customs": sb.add_key("VN/customs", t),
            "VN/business-registry": sb.add_key("VN/business-registry", t),
            "TH/doa": sb.add_key("TH/doa", t),
            "KH/gdt": sb.add_key("KH/gdt", t),
        }
        sb.set_policy("TH", [("VN", ["certificate-of-origin", "legal-entity", "authorised-signatory"],
                              "substantial")], t)
        sb.set_policy("CN", [("*", ["*"], "high")], t)
        sb.finalize_all(T0 + 100)

    def view(self) -> Any:
        return self.sb.view()
