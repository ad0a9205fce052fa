"""HTTP handlers for the ledger API of a node (specs/api.md sections A.7 to A.12).

Handlers are thin: parse the request, call :class:`~node.service.NodeService`
or the :class:`~node.host.LedgerHost` on its thread, shape the answer. Errors
are exceptions from the ledger's root, mapped to statuses by the one error
middleware; the witness endpoint alone answers in C2SP tlog-witness's own
terms (409 with ``text/x.tlog.size``, 422, 404, 403).

:func:`add_routes` adds every route to the application :func:`node.app.create_app` builds: health and
metrics (A.4, A.5), the C2SP tiles, and the ledger API.
"""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from ledger import cbor
from ledger.bodies import check_issuer_id, member_of
from ledger.errors import DecodeError, VerificationError
from ledger.state import StateKey
from node.appkeys import CONCURRENCY_KEY, CONFIG_KEY, METRICS_KEY, RATE_LIMITER_KEY, SERVICE_KEY, STORAGE_KEY
from node.host import BadProof, UnknownLog, WitnessConflict
from node.jsonview import to_json
from node.limits import SUBMITTER, read_body, submitter_of
from node.metrics import CONTENT_TYPE
from node.middleware import HttpRefusal, NotFoundError, RequestTooLargeError
from node.peerauth import verify_request
from node.service import NodeService
from node.stateapi import NotAtCheckpoint, parse_keys, state_answer
from node.tiles import TILE_ROUTE, StorageTileSource, TileSource, tile_handler

_MEMBER = re.compile(r"[A-Z]{2}")
_HEX = re.compile(r"(?:[0-9a-f]{2}){1,64}")
#: Longest ``wait`` of a covering query, seconds (A.7.2).
MAX_WAIT_SECONDS = 10
SUBMIT_LIMITS = cbor.CborLimits(max_size=1 << 28, max_depth=2, max_items=100_001)


class Misdirected(HttpRefusal):
    """Entries for a log this node does not own: 421, naming the owner's endpoint."""

    status = 421
    kind = "misdirected"


def add_routes(r: web.UrlDispatcher) -> None:
    """Add every route of specs/api.md (called once, by :func:`node.app.create_app`)."""
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics_handler)
    r.add_get(TILE_ROUTE, tile_handler(_resolve_log))
    r.add_get("/status", status)
    r.add_get("/logs/{member}/checkpoint", get_checkpoint)
    r.add_post("/logs/{member}/checkpoint", post_checkpoint)
    r.add_get("/logs/{member}/entries", get_entries)
    r.add_post("/logs/{member}/entries", post_entries)
    r.add_get("/logs/{member}/proof/inclusion", inclusion_proof)
    r.add_get("/logs/{member}/proof/consistency", consistency_proof)
    r.add_get("/logs/{member}/state", get_state)
    r.add_post("/witness/add-checkpoint", add_checkpoint)
    r.add_get("/governance/roots", list_roots)
    r.add_get("/governance/roots/{version}", get_root)
    r.add_post("/governance/roots", post_root)
    r.add_get("/registry/issuers", registry_issuer_ids)
    r.add_get("/registry/issuers/{issuer}", registry_issuer)
    r.add_get("/registry/keys/{kid}", registry_key)
    r.add_get("/registry/credentials/{issuer}/{cti}", registry_credential)
    r.add_get("/registry/anchors/{digest}", registry_anchors)
    r.add_get("/registry/policies/{member}", registry_policy)


# ----------------------------------------------------------------------------- health, metrics, tiles


async def _body(request: web.Request) -> bytes:
    # Every handler reads its body through the size limit and the read timeout (spec A.3).
    limits = request.app[CONFIG_KEY].limits
    return await read_body(request, limits.max_request_bytes, limits.body_read_timeout_ms / 1000)


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 while storage answers and public requests are served; 503 ``degraded`` while every
    public request slot is taken (spec A.4)."""
    config = request.app[CONFIG_KEY]
    size = await asyncio.to_thread(request.app[STORAGE_KEY].size, config.member)
    degraded = request.app[CONCURRENCY_KEY].saturated
    return web.json_response({"status": "degraded" if degraded else "ok", "member": config.member,
                              "network": config.network, "log_size": size},
                             status=503 if degraded else 200, headers={"Cache-Control": "no-store"})


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text format (spec A.5)."""
    text = await asyncio.to_thread(request.app[METRICS_KEY].registry.render)
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


async def _resolve_log(request: web.Request) -> tuple[int, TileSource]:
    member = request.match_info["member"]
    storage = request.app[STORAGE_KEY]
    if not _MEMBER.fullmatch(member) or member not in await asyncio.to_thread(storage.logs):
        raise NotFoundError(f"this node serves no log {member[:16]!r}")
    return await asyncio.to_thread(storage.size, member), StorageTileSource(storage, member)


def _svc(request: web.Request) -> NodeService:
    return request.app[SERVICE_KEY]


def _member(request: web.Request, name: str = "member") -> str:
    member = request.match_info[name]
    if not _MEMBER.fullmatch(member) or member not in _svc(request).host.logs:
        raise NotFoundError(f"this node serves no log {member[:16]!r}")
    return member


def _int_param(request: web.Request, name: str, default: int | None = None) -> int:
    text = request.query.get(name)
    if text is None:
        if default is None:
            raise DecodeError(f"query parameter {name!r} is required")
        return default
    if not text.isdigit() or len(text) > 20:
        raise DecodeError(f"query parameter {name!r} must be a non-negative integer")
    return int(text)


def _hex(request: web.Request, name: str) -> bytes:
    text = request.match_info[name]
    if not _HEX.fullmatch(text):
        raise DecodeError(f"{name} must be lower-case hex")
    return bytes.fromhex(text)


async def _signed_by_peer(request: web.Request, body: bytes) -> str:
    svc = _svc(request)
    member = verify_request(request.headers.get("Authorization"), request.method, request.path, body, svc.clock(),
                            lambda m: svc.host.root.node_key_of(m) if m in svc.host.root.member_ids else None)
    request[SUBMITTER] = member
    return member


# ----------------------------------------------------------------------------- status and logs


async def status(request: web.Request) -> web.Response:
    """``GET /status``: sizes, final sizes and root version (A.7)."""
    svc = _svc(request)
    sizes = await svc.call(svc.host.sizes)
    return web.json_response({
        "member": svc.config.member, "network": svc.config.network, "root_version": svc.host.root.version,
        "time": svc.clock(),
        "logs": {m: {"size": s, "final_size": f} for m, (s, f) in sorted(sizes.items())},
        "witnesses": {p: svc.witness_size(p) for p in sorted(svc.peers())},
        "witnessed": await svc.call(svc.host.witnessed_sizes),
        "peers": svc.peer_contact(),
    }, headers={"Cache-Control": "no-store"})


async def get_checkpoint(request: web.Request) -> web.Response:
    """``GET /logs/{member}/checkpoint[?covering=I[&wait=S]]``: a final checkpoint with its cosignatures (A.7.2).

    The newest one, or with ``covering`` the oldest one whose size exceeds ``I``; on the owner's node,
    ``wait`` holds the answer up to ``S`` seconds (at most 10) for such a checkpoint to become final.
    """
    member = _member(request)
    svc = _svc(request)
    if "covering" in request.query:
        index = _int_param(request, "covering")
        fin = await svc.call(svc.host.first_final_covering, member, index)
        wait = min(_int_param(request, "wait", 0), MAX_WAIT_SECONDS)
        # a long poll for a submitter: answered as soon as a final checkpoint covers the entry (A.7.2)
        if fin is None and wait and member == svc.config.member and await svc.wait_final(index + 1, wait):
            fin = await svc.call(svc.host.first_final_covering, member, index)
        if fin is None:
            raise NotFoundError(f"log {member} has no final checkpoint covering entry {index}")
    else:
        fin = svc.host.final.get(member)
    if fin is None:
        raise NotFoundError(f"log {member} has no final checkpoint yet")
    return web.Response(body=fin[1], content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def get_state(request: web.Request) -> web.Response:
    """``GET /logs/{member}/state?key=K[&key=K...]``: state values with proofs and their entries (A.13)."""
    member = _member(request)
    keys = parse_keys(request.query.getall("key", []))
    svc = _svc(request)
    body = await svc.call(state_answer, svc.host.member_log(member), keys)
    return web.Response(body=body, content_type="application/cbor", headers={"Cache-Control": "no-cache"})


async def post_checkpoint(request: web.Request) -> web.Response:
    """``POST /logs/{member}/checkpoint``: a peer announces a final checkpoint (A.9)."""
    member = _member(request)
    body = await _body(request)
    sender = await _signed_by_peer(request, body)
    final = await _svc(request).accept_final(member, body, sender)
    return web.json_response({"final": final})


async def get_entries(request: web.Request) -> web.Response:
    """``GET /logs/{member}/entries?start=A&end=B``: stored entries as a CBOR array (A.9)."""
    member = _member(request)
    svc = _svc(request)
    lg = svc.host.logs[member]
    size = lg.size
    start = _int_param(request, "start")
    end = min(_int_param(request, "end", size), size, start + 1000)
    if start >= end:
        raise NotFoundError(f"log {member} has {size} entries; none in [{start}, {end})")
    raws = await svc.call(lg.read, start, end)
    return web.Response(body=cbor.encode(raws), content_type="application/cbor")


async def post_entries(request: web.Request) -> web.Response:
    """``POST /logs/{member}/entries``: submit signed entries to the owner node (A.7)."""
    member = request.match_info["member"]
    svc = _svc(request)
    limits = svc.limits
    if member != svc.config.member:
        owner = svc.peers().get(member)
        raise Misdirected(f"this node owns log {svc.config.member}; submit entries for {member[:16]!r} to "
                          f"{owner or 'its owner node'}")
    body = await _body(request)
    raws = cbor.decode(body, SUBMIT_LIMITS)
    if not isinstance(raws, list) or not raws or not all(isinstance(r, bytes) for r in raws):
        raise DecodeError("the body must be a non-empty CBOR array of COSE_Sign1 byte strings")
    if len(raws) > limits.max_batch_entries:
        raise RequestTooLargeError(f"{len(raws)} entries exceed the batch limit of {limits.max_batch_entries}")
    if any(len(r) > limits.max_entry_bytes for r in raws):
        raise RequestTooLargeError(f"an entry exceeds the limit of {limits.max_entry_bytes} bytes")
    request.app[RATE_LIMITER_KEY].take(submitter_of(request), len(raws))
    try:
        indices = await svc.submit(raws)
    except (DecodeError, VerificationError) as e:
        request.app[METRICS_KEY].submissions_rejected.inc(reason=type(e).__name__)
        raise
    answer: dict[str, Any] = {"indices": indices, "size": indices[-1] + 1}
    if request.query.get("wait") == "final":
        fin = await svc.wait_final(indices[-1] + 1, limits.witness_quorum_timeout_ms / 1000)
        answer["final_size"] = fin[0] if fin else None
        answer["checkpoint"] = fin[1].decode("utf-8") if fin else None
    return web.json_response(answer)


async def inclusion_proof(request: web.Request) -> web.Response:
    """``GET /logs/{member}/proof/inclusion?index=I[&size=N]``: against the final size by default (A.7)."""
    member = _member(request)
    svc = _svc(request)
    fin = svc.host.final.get(member)
    held = svc.host.logs[member].size
    size = _int_param(request, "size", fin[0] if fin else held)
    index = _int_param(request, "index")
    if size > held:
        raise NotFoundError(f"log {member} holds {held} entries here; there is no tree of size {size}")
    if index >= size:
        raise DecodeError(f"index {index} is not below the tree size {size}")
    proof = await svc.call(svc.host.logs[member].inclusion_proof, index, size)
    return web.json_response({"index": index, "size": size, "proof": [base64.b64encode(h).decode() for h in proof]})


async def consistency_proof(request: web.Request) -> web.Response:
    """``GET /logs/{member}/proof/consistency?from=A&to=B`` (A.7)."""
    member = _member(request)
    svc = _svc(request)
    first, second = _int_param(request, "from"), _int_param(request, "to")
    held = svc.host.logs[member].size
    if second > held:
        raise NotFoundError(f"log {member} holds {held} entries here; there is no tree of size {second}")
    if not 0 < first <= second:
        raise DecodeError(f"a consistency proof needs 0 < from <= to, got from={first}, to={second}")
    proof = await svc.call(svc.host.logs[member].consistency_proof, first, second)
    return web.json_response({"from": first, "to": second, "proof": [base64.b64encode(h).decode() for h in proof]})


# ----------------------------------------------------------------------------- witness (C2SP tlog-witness)


async def add_checkpoint(request: web.Request) -> web.Response:
    """``POST /witness/add-checkpoint`` (A.8): C2SP tlog-witness with its status codes."""
    body = await _body(request)
    sender = await _signed_by_peer(request, body) if "Authorization" in request.headers else None
    try:
        line = await _svc(request).witness(body, sender)
    except WitnessConflict as e:
        return web.Response(status=409, body=f"{e.size}\n".encode(), content_type="text/x.tlog.size")
    except UnknownLog as e:
        return web.Response(status=404, text=str(e))
    except BadProof as e:
        return web.Response(status=422, text=str(e))
    except VerificationError as e:
        return web.Response(status=403, text=str(e))
    return web.Response(body=line.encode("utf-8"), content_type="text/plain", charset="utf-8")


# ----------------------------------------------------------------------------- governance


async def list_roots(request: web.Request) -> web.Response:
    """``GET /governance/roots``: the versions held and the current one (A.11)."""
    chain = _svc(request).host.chain
    return web.json_response({"versions": [r.version for r in chain.roots], "current": chain.current.version,
                              "current_hash": chain.current.root_hash.hex()})


async def get_root(request: web.Request) -> web.Response:
    """``GET /governance/roots/{version}``: the signed root as CBOR (A.11)."""
    text = request.match_info["version"]
    chain = _svc(request).host.chain
    if not text.isdigit() or not 1 <= int(text) <= len(chain.roots):
        raise NotFoundError(f"no governance root version {text[:20]!r}")
    return web.Response(body=chain.signed(int(text)).to_cbor(), content_type="application/cbor",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


async def post_root(request: web.Request) -> web.Response:
    """``POST /governance/roots``: submit the next root; adopted once valid and forwarded to peers (A.11)."""
    body = await _body(request)
    version = await _svc(request).adopt_root(body, forward=True)
    return web.json_response({"version": version})


# ----------------------------------------------------------------------------- registry queries (A.12)


async def _answer(request: web.Request, log: str, record: Any, indices: tuple[int, ...],
                  key: StateKey) -> web.Response:
    svc = _svc(request)
    fin = svc.host.final.get(log)
    if fin is None:
        raise NotFoundError(f"log {log} has no final checkpoint yet")
    size = fin[0]
    lg = svc.host.logs[log]

    def bundle() -> list[dict[str, Any]]:
        out = []
        for i in sorted(set(indices)):
            if i < size:
                out.append({"index": i, "entry": base64.b64encode(lg.read(i, i + 1)[0]).decode(),
                            "proof": [base64.b64encode(h).decode() for h in lg.inclusion_proof(i, size)]})
        return out

    def proof() -> str | None:
        # The key's value or absence with its proof against a checkpoint's state root (A.13), so that the answer
        # also proves that no later entry (a revocation) changed it; None while the state is between checkpoints.
        try:
            return base64.b64encode(state_answer(lg, [key])).decode()
        except NotAtCheckpoint:
            return None

    entries = await svc.call(bundle)
    state = await svc.call(proof)
    return web.json_response({"answer": to_json(record), "log": log, "final_size": size,
                              "checkpoint": fin[1].decode("utf-8"), "entries": entries, "state": state})


def _final_size(request: web.Request, log: str) -> int:
    fin = _svc(request).host.final.get(log)
    return fin[0] if fin else 0


async def registry_issuer_ids(request: web.Request) -> web.Response:
    """``GET /registry/issuers?member=M``: the ids of the issuers M's log registers (A.12; a list to look up,
    each then provable by its state key)."""
    member = request.query.get("member", "")
    svc = _svc(request)
    if not _MEMBER.fullmatch(member) or member not in svc.host.logs:
        raise NotFoundError(f"this node serves no log {member[:16]!r}")
    ids = await svc.call(svc.host.state.issuer_ids, member)
    return web.json_response({"member": member, "issuers": list(ids)})


async def registry_issuer(request: web.Request) -> web.Response:
    """``GET /registry/issuers/{issuer}`` (issuer id URL-encoded)."""
    issuer = check_issuer_id(unquote(request.match_info["issuer"]))
    log = member_of(issuer)
    if not _MEMBER.fullmatch(log) or log not in _svc(request).host.logs:
        raise NotFoundError(f"no member log for issuer {issuer[:64]!r}")
    state = _svc(request).host.state
    rec = await _svc(request).call(state.issuer, issuer, _final_size(request, log))
    return await _answer(request, log, rec, rec.entries if rec else (), StateKey("issuer", (issuer,)))


async def registry_key(request: web.Request) -> web.Response:
    """``GET /registry/keys/{kid_hex}``."""
    kid = _hex(request, "kid")
    svc = _svc(request)
    owners = await svc.call(svc.host.state.key_issuers, kid)
    if not owners:
        raise NotFoundError(f"no issuer key {kid.hex()}")
    log = owners[0].split("/", 1)[0]
    rec = await svc.call(lambda: svc.host.state.key(kid, _final_size(request, log), issuer=owners[0]))
    return await _answer(request, log, rec, rec.entries if rec else (), StateKey("key", (kid,)))


async def registry_credential(request: web.Request) -> web.Response:
    """``GET /registry/credentials/{issuer}/{cti_hex}``."""
    issuer = check_issuer_id(unquote(request.match_info["issuer"]))
    log = member_of(issuer)
    if not _MEMBER.fullmatch(log) or log not in _svc(request).host.logs:
        raise NotFoundError(f"no member log for issuer {issuer[:64]!r}")
    cti = _hex(request, "cti")
    svc = _svc(request)
    rec = await svc.call(svc.host.state.credential, issuer, cti, _final_size(request, log))
    return await _answer(request, log, rec, rec.entries if rec else (), StateKey("status", (issuer, cti)))


async def registry_anchors(request: web.Request) -> web.Response:
    """``GET /registry/anchors/{digest_hex}``: anchors under final checkpoints, across logs."""
    digest = _hex(request, "digest")
    svc = _svc(request)
    as_of = {m: f[0] for m, f in svc.host.final.items()}
    found = await svc.call(svc.host.state.anchors, digest, as_of)
    if not found:
        return web.json_response({"answer": [], "entries": []})
    log = found[0].log
    return await _answer(request, log, found, tuple(a.index for a in found if a.log == log),
                         StateKey("anchor", (digest,)))


async def registry_policy(request: web.Request) -> web.Response:
    """``GET /registry/policies/{member}``."""
    member = _member(request)
    svc = _svc(request)
    rec = await svc.call(svc.host.state.policy, member, _final_size(request, member))
    return await _answer(request, member, rec, rec.entries if rec else (), StateKey("policy"))
