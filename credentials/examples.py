"""One complete example claims file per credential profile (specs/credentials.md section 3).

``mekong credential template --profile X`` prints these; each is the JSON form ``mekong credential issue
--claims`` reads (byte strings as hex, amounts in minor units, decimals as strings), and each validates
against its profile (tested for every profile). The values are illustrative: a rice shipment from Viet Nam
to Thailand, durian from Thailand to China, and the traders and documents around them.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["EXAMPLES", "example"]

_DIGEST = {"alg": "sha-256", "value": "2f0c9bd6e3f1c1b2a7dd5a1c9f0a5b3e4d2c1b0a99887766554433221100ffee"}
_EXPORTER = {"name": "Mekong Rice Co., Ltd", "country": "VN", "id": "0312345678"}
_IMPORTER = {"name": "Bangkok Foods PCL", "country": "TH"}

#: Profile name -> its example claims, as JSON.
EXAMPLES: dict[str, dict[str, Any]] = {
    "legal-entity": {
        "type": "legal-entity", "registered_id": "0312345678", "id_scheme": "tax-id",
        "legal_name": "Mekong Rice Co., Ltd", "jurisdiction": "VN", "registration_status": "active",
        "loa": "substantial"},
    "authorised-signatory": {
        "type": "authorised-signatory", "person_name": "Nguyen Van An", "role": "Chief Accountant",
        "legal_entity": {"issuer": "VN/business-registry", "cti": "00112233445566778899aabbccddeeff",
                         "digest": "5b1f4c2a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180716253443526170ff"},
        "signatory_key": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "loa": "substantial"},
    "certificate-of-origin": {
        "type": "certificate-of-origin", "certificate_number": "VN-TH-2026-004711", "agreement": "ATIGA",
        "issuing_body": {"name": "VCCI Ho Chi Minh", "country": "VN"}, "exporting_country": "VN",
        "importing_country": "TH", "exporter": _EXPORTER, "consignee": _IMPORTER,
        "items": [{"hs_code": "100630", "description": "Jasmine rice, milled", "origin_criterion": "WO",
                   "quantity": {"value": "20000", "unit": "KGM"}, "fob_value": {"amount": 1240000, "currency": "USD"}}],
        "invoice_number": "INV-2026-77", "invoice_date": "2026-03-01", "document_digest": _DIGEST},
    "phytosanitary-certificate": {
        "type": "phytosanitary-certificate", "certificate_number": "TH-PC-9981", "certificate_type": "phyto",
        "commodity": "Fresh durian", "quantity": {"value": "12.5", "unit": "TNE"}, "origin_country": "TH",
        "destination_country": "CN", "issue_date": "2026-05-02", "document_digest": _DIGEST,
        "botanical_name": "Durio zibethinus"},
    "e-invoice": {
        "type": "e-invoice", "invoice_number": "C26TAA-0000123", "issue_date": "2026-03-01",
        "seller_tax_id": "0312345678", "buyer_tax_id": "0105987432", "currency": "VND",
        "total_without_tax": 100000000, "tax_total": 8000000, "total_with_tax": 108000000,
        "tax_authority_code": "GDT-9F3A21", "document_digest": _DIGEST},
    "aeo-status": {
        "type": "aeo-status", "trader_id": "0312345678", "administration": "VN",
        "programme": "Viet Nam AEO programme", "status": "certified", "valid_from": "2026-01-01",
        "valid_until": "2028-12-31", "mra_partners": ["TH", "KH"]},
    "customs-declaration-summary": {
        "type": "customs-declaration-summary", "declaration_number": "305123456789", "declaration_type": "export",
        "declaration_date": "2026-03-02", "customs_office": "02CI",
        "exporter": {"name": "Mekong Rice Co., Ltd", "country": "VN"}, "importer": _IMPORTER,
        "transport_mode": "sea", "country_of_export": "VN", "country_of_destination": "TH",
        "invoice_number": "INV-2026-77", "total_invoice_value": {"amount": 1240000, "currency": "USD"},
        "packages": 400, "gross_mass": {"value": "20100.5", "unit": "KGM"},
        "items": [{"hs_code": "100630", "description": "Jasmine rice", "origin_country": "VN",
                   "quantity": {"value": "20000", "unit": "KGM"},
                   "customs_value": {"amount": 1240000, "currency": "USD"}, "preference": "ATIGA"}],
        "document_digest": _DIGEST, "port_of_loading": "VNSGN", "port_of_discharge": "THLCH",
        "delivery_terms": "FOB", "exchange_rate": "24500.5"},
}


def example(profile: str) -> dict[str, Any]:
    """A fresh copy of the example claims of ``profile``.

    Raises:
        KeyError: no such profile.
    """
    return copy.deepcopy(EXAMPLES[profile])
