"""The ledger explorer: read-only pages every node serves at ``/`` for operators and auditors (specs/api.md A.14).

Rendered on the server with Jinja2 templates (``node/templates``, autoescaped), no JavaScript: the
network (members, governance, each log's size, final size, cosigners and witness lag), a log (recent
checkpoints with their cosignatures, entries decoded with their signer and type, paged), an issuer
(accreditations, keys with their validity and status, a credential's status history), a credential check
(upload a file: the report ``mekong verify`` prints, judged against this node's final state) and the
evidence this node keeps. Everything shown is read from the node's verified database.
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote, unquote

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.web_request import FileField

from credentials.ledgerview import database_view
from credentials.steps import VerificationPolicy
from credentials.verify import verify as verify_subject
from ledger.bodies import CredentialAnchor, CredentialStatus, check_issuer_id, member_of
from ledger.checkpoint import Checkpoint, Cosignature
from ledger.entries import UnverifiedEntry
from ledger.errors import DecodeError, MekongError
from ledger.note import Note, NoteSignature
from node.host import LedgerHost
from node.middleware import NotFoundError

__all__ = ["ENTRIES_PER_PAGE", "add_explorer"]

ENTRIES_PER_PAGE = 50
CHECKPOINTS_SHOWN = 10
MAX_UPLOAD = 1 << 20


def _when(t: int | None) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def add_explorer(app: web.Application) -> None:
    """Set up the templates and add the explorer's routes."""
    env = aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("node", "templates"), autoescape=True)
    env.filters["when"] = _when
    env.filters["urlpart"] = lambda s: quote(str(s), safe="")
    r = app.router
    r.add_get("/", network_page)
    r.add_get("/explorer/logs/{member}", log_page)
    r.add_get("/explorer/issuers/{issuer}", issuer_page)
    r.add_get("/explorer/verify", verify_form)
    r.add_post("/explorer/verify", verify_upload)
    r.add_get("/explorer/evidence", evidence_page)


def _svc(request: web.Request) -> Any:
    from node.appkeys import SERVICE_KEY
    return request.app[SERVICE_KEY]


def _cosigners(note: bytes) -> list[tuple[str, int]]:
    out = []
    for sig in Note.parse(note).signatures:
        try:
            out.append((sig.name.rsplit("/", 2)[-2], Cosignature.from_note_signature(sig).timestamp))
        except (DecodeError, IndexError):
            continue  # the log's own signature line
    return sorted(out)


def _network(host: LedgerHost, witnessed: dict[str, int]) -> dict[str, Any]:
    root = host.root
    logs = []
    for m, (size, final) in sorted(host.sizes().items()):
        fin = host.final.get(m)
        logs.append({"member": m, "size": size, "final": final,
                     "cosigners": _cosigners(fin[1]) if fin else [],
                     "lag": None if m != host.member else {w: size - s for w, s in sorted(witnessed.items())}})
    return {"member": host.member, "network": host.network, "version": root.version, "quorum": root.quorum,
            "faulty": root.faulty, "members": [(x.id, x.name) for x in root.members], "logs": logs,
            "evidence": len(host.storage.evidence())}


@aiohttp_jinja2.template("network.html")
async def network_page(request: web.Request) -> dict[str, Any]:
    """``/``: the network as this node sees it."""
    svc = _svc(request)
    witnessed = await svc.call(svc.host.witnessed_sizes)
    return {"title": "Network", **await svc.call(_network, svc.host, witnessed), "peers": svc.peer_contact()}


def _summary(e: UnverifiedEntry) -> str:
    b = e.body
    if isinstance(b, CredentialAnchor):
        return f"digest {b.digest.hex()[:16]}..." + (f" credential {b.credential_id.hex()}" if b.credential_id else "")
    if isinstance(b, CredentialStatus):
        return f"credential {b.credential_id.hex()} -> {b.status}" + (f" ({b.reason})" if b.reason else "")
    issuer = getattr(b, "issuer", None)
    return f"issuer {issuer}" if issuer else ""


def _log(host: LedgerHost, member: str, page: int) -> dict[str, Any]:
    lg = host.member_log(member)
    size = lg.size
    pages = max(1, -(-size // ENTRIES_PER_PAGE))
    page = min(max(page, 1), pages)
    hi = size - (page - 1) * ENTRIES_PER_PAGE
    lo = max(0, hi - ENTRIES_PER_PAGE)
    entries = []
    for i, raw in zip(range(hi - 1, lo - 1, -1), reversed(lg.read(lo, hi) if hi > lo else [])):
        try:
            e = UnverifiedEntry.decode(raw)
            entries.append({"index": i, "type": e.type, "time": e.time, "signer": (e.sign1.kid or b"").hex(),
                            "summary": _summary(e), "issuer": getattr(e.body, "issuer", None)})
        except DecodeError as err:
            entries.append({"index": i, "type": "?", "time": None, "signer": "", "summary": str(err), "issuer": None})
    checkpoints = []
    for cp_size, note in host.storage.checkpoints(member, CHECKPOINTS_SHOWN)[::-1]:
        cp = Checkpoint.parse(Note.parse(note).text)
        cosigs = []
        for c in host.storage.cosignatures(member, cp_size):
            try:
                ts: int | None = Cosignature.from_note_signature(NoteSignature.parse_line(c.line.decode())).timestamp
            except (DecodeError, UnicodeDecodeError):
                ts = None
            cosigs.append((c.witness, ts))
        checkpoints.append({"size": cp_size, "root": cp.root_hash.hex(), "extensions": cp.extensions,
                            "final": host.storage.final_covering(member, cp_size - 1) == cp_size,
                            "cosignatures": cosigs})
    return {"log": member, "size": size, "page": page, "pages": pages, "entries": entries, "checkpoints": checkpoints}


@aiohttp_jinja2.template("log.html")
async def log_page(request: web.Request) -> dict[str, Any]:
    """``/explorer/logs/{member}?page=N``: checkpoints and entries of one log, newest first."""
    svc = _svc(request)
    member = request.match_info["member"]
    if member not in svc.host.logs:
        raise NotFoundError(f"this node holds no log {member[:16]!r}")
    try:
        page = int(request.query.get("page", "1")[:9])
    except ValueError:
        page = 1
    return {"title": f"Log {member}", **await svc.call(_log, svc.host, member, page)}


def _issuer(host: LedgerHost, issuer: str, cti: bytes | None) -> dict[str, Any] | None:
    rec = host.state.issuer(issuer)
    if rec is None:
        return None
    keys = [k for k in (host.state.key(kid, issuer=issuer) for kid in rec.keys) if k is not None]
    cred = host.state.credential(issuer, cti) if cti is not None else None
    return {"issuer": rec, "keys": keys, "cti": cti.hex() if cti else "", "credential": cred,
            "searched": cti is not None}


@aiohttp_jinja2.template("issuer.html")
async def issuer_page(request: web.Request) -> dict[str, Any]:
    """``/explorer/issuers/{issuer}[?cti=HEX]``: accreditation history, keys, a credential's status."""
    svc = _svc(request)
    try:
        issuer = check_issuer_id(unquote(request.match_info["issuer"]))
        member_of(issuer)
        text = request.query.get("cti", "").strip()
        cti = bytes.fromhex(text) if text else None
    except (DecodeError, ValueError) as e:
        raise DecodeError(f"not an issuer id and credential id: {e}") from None
    found = await svc.call(_issuer, svc.host, issuer, cti)
    if found is None:
        raise NotFoundError(f"no issuer {issuer!r} on this node's ledger")
    return {"title": f"Issuer {issuer}", **found}


@aiohttp_jinja2.template("verify.html")
async def verify_form(request: web.Request) -> dict[str, Any]:
    """``/explorer/verify``: a form to check a credential file."""
    svc = _svc(request)
    return {"title": "Check a credential", "members": sorted(svc.host.root.member_ids), "as_member": svc.config.member,
            "report": None}


@aiohttp_jinja2.template("verify.html")
async def verify_upload(request: web.Request) -> dict[str, Any]:
    """``POST /explorer/verify``: the report of ``mekong verify`` for the uploaded file, as this node judges."""
    svc = _svc(request)
    form = await request.post()
    upload = form.get("credential")
    raw = upload.file.read(MAX_UPLOAD + 1) if isinstance(upload, FileField) else b""
    if not raw or len(raw) > MAX_UPLOAD:
        raise DecodeError(f"upload a credential file of 1 to {MAX_UPLOAD} bytes")
    members = sorted(svc.host.root.member_ids)
    as_member = str(form.get("as_member") or svc.config.member).upper()
    if as_member not in members:
        raise DecodeError(f"{as_member[:8]!r} is not a member")

    def judge() -> Any:
        view = database_view(svc.host.state, svc.host.logs,
                             [f"{e.kind} of log {e.log}: {e.reason}" for e in svc.host.storage.evidence()])
        return verify_subject(raw, view, VerificationPolicy(as_member, max_age_seconds=120), svc.clock())

    try:
        report = await svc.call(judge)
    except MekongError as e:
        raise DecodeError(f"cannot check this file: {e}") from None
    return {"title": "Check a credential", "members": members, "as_member": as_member, "report": report,
            "text": report.render_text()}


@aiohttp_jinja2.template("evidence.html")
async def evidence_page(request: web.Request) -> dict[str, Any]:
    """``/explorer/evidence``: refused checkpoints, split views and root equivocations this node keeps."""
    svc = _svc(request)
    rows = await svc.call(svc.host.storage.evidence)
    return {"title": "Evidence", "rows": [{"log": e.log, "kind": e.kind, "received": e.received, "reason": e.reason,
                                           "size": len(e.data)} for e in rows]}
