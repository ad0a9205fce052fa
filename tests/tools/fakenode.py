"""An in-process stand-in for member nodes, for the CLI tests: real ledger objects behind a tiny HTTP server.

:class:`FakeNetwork` holds one SQLite database with every member's log, each a
:class:`ledger.memberlog.MemberLog` owning its log with that member's node key,
so submitted entries go through every ledger rule and every checkpoint is
really signed and cosigned by the members' node keys. :class:`FakeNode`
serves the read and submission routes of specs/api.md that the CLI uses
(not peer authentication, witnessing or tiles). Keys derive from a seed, so
two networks built from one seed share a genesis: handy for split views.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import nacl.signing

from ledger import cbor
from ledger.checkpoint import Checkpoint, CosignatureSigner, add_signatures, witness_name
from ledger.errors import AuthorizationError, ConflictError, MekongError, VerificationError
from ledger.governance import GovernanceChain
from ledger.memberlog import MemberLog
from ledger.note import Note, NoteSignature
from ledger.registry import RegistryState
from ledger.roots import Member, Root, SignedRoot
from ledger.storage import Storage

MEMBERS = ("KH", "LA", "TH", "VN")


def seeded_key(seed: str) -> nacl.signing.SigningKey:
    """A deterministic Ed25519 key."""
    return nacl.signing.SigningKey(hashlib.sha256(seed.encode()).digest())


class FakeNetwork:
    """Every member's log in one database, finalised at once by all members' node keys.

    Args:
        directory: where the database goes.
        members: member ids.
        faulty: ``f``; quorum and threshold are the smallest safe value.
        seed: key seed.
        issued_at: genesis time.
    """

    def __init__(self, directory: Path, members: tuple[str, ...] = MEMBERS, faulty: int = 1, seed: str = "fake",
                 issued_at: int = 1_700_000_000) -> None:
        self.network = "gms"
        self.admin = {m: seeded_key(f"{seed}/{m}/admin") for m in members}
        self.node = {m: seeded_key(f"{seed}/{m}/node") for m in members}
        q = (len(members) + faulty) // 2 + 1
        root = Root(self.network, 1, None, tuple(
            Member(m, f"Member {m}", (bytes(self.admin[m].verify_key),), bytes(self.node[m].verify_key),
                   (f"http://{m.lower()}.invalid",)) for m in sorted(members)), q, q, faulty, issued_at)
        self.genesis = SignedRoot.create(root, [self.admin[m] for m in sorted(members)])
        self.path = directory / "fake-network.sqlite"
        self.storage = Storage.open(self.path, synchronous="OFF")
        self.storage.put_root(1, self.genesis.to_cbor())
        self.chain = GovernanceChain(self.genesis, self.genesis.root_hash)
        self.state = RegistryState(self.chain)
        self.logs = {m: MemberLog(self.storage, m, self.network, self.state, self.node[m]) for m in sorted(members)}
        self.lock = threading.Lock()

    def close(self) -> None:
        """Release the logs and the database."""
        for lg in self.logs.values():
            lg.close()
        self.storage.close()

    def finalize(self, member: str, witnesses: tuple[str, ...] | None = None) -> int:
        """Sign a checkpoint of ``member``'s whole log and have ``witnesses`` (default: all) cosign it; its size."""
        lg = self.logs[member]
        t = int(time.time())
        note = lg.checkpoint(t)
        cp = Checkpoint.parse(note.text)
        for w in witnesses if witnesses is not None else tuple(self.logs):
            if w != member:
                lg.add_cosignatures(cp.size, [CosignatureSigner(witness_name(self.network, w), self.node[w])
                                              .cosign(cp, t)])
        return cp.size

    def submit(self, member: str, raws: list[bytes]) -> dict[str, Any]:
        """Append ``raws`` to ``member``'s log (every rule checked) and finalise it."""
        indices = self.logs[member].append(raws)
        size = self.finalize(member)
        return {"indices": indices, "size": size, "final_size": size, "checkpoint": self.final_note(member)}

    def final_note(self, member: str, *, newest: bool = False) -> str | None:
        """The newest final checkpoint note with its cosignatures (``newest``: the newest, final or not)."""
        lg = self.logs[member]
        for size, _ in reversed(self.storage.checkpoints(member)):
            fin = lg.finality(size)
            if newest or (fin is not None and fin.final):
                return add_signatures(Note.parse(self.storage.checkpoint(member, size) or b""), [
                    NoteSignature.parse_line(c.line.decode()) for c in self.storage.cosignatures(member, size)
                ]).format()
        return None

    def add_root(self, data: bytes) -> int:
        """Verify and adopt the next governance root."""
        signed = SignedRoot.from_cbor(data)
        root = self.chain.add(signed)
        self.storage.put_root(root.version, signed.to_cbor())
        return root.version


class FakeNode:
    """Serves ``net`` over HTTP on a free loopback port until :meth:`stop`.

    With ``serve_unfinal`` it misbehaves: it serves the newest checkpoint even when it is not final.
    """

    def __init__(self, net: FakeNetwork, serve_unfinal: bool = False) -> None:
        self.net = net
        handler = type("Handler", (_Handler,), {"net": net, "serve_unfinal": serve_unfinal})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Handler(BaseHTTPRequestHandler):
    net: FakeNetwork
    serve_unfinal: bool

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, doc: Any, status: int = 200) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _error(self, status: int, kind: str, message: str) -> None:
        self._json({"error": kind, "message": message}, status)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        net = self.net
        with net.lock:
            if url.path == "/healthz":
                return self._json({"status": "ok", "network": net.network})
            if url.path == "/governance/roots":
                return self._json({"versions": [r.version for r in net.chain.roots],
                                   "current": net.chain.current.version})
            if m := re.fullmatch(r"/governance/roots/(\d+)", url.path):
                v = int(m[1])
                if not 1 <= v <= len(net.chain.roots):
                    return self._error(404, "not_found", f"no root version {v}")
                return self._send(200, net.chain.signed(v).to_cbor(), "application/cbor")
            m = re.fullmatch(r"/logs/([A-Z]{2})/(checkpoint|entries|proof/consistency)", url.path)
            if m is None or m[1] not in net.logs:
                return self._error(404, "not_found", f"no route {url.path}")
            lg = net.logs[m[1]]
            if m[2] == "checkpoint":
                note = net.final_note(m[1], newest=self.serve_unfinal)
                if note is None:
                    return self._error(404, "not_found", "no final checkpoint")
                return self._send(200, note.encode(), "text/plain")
            if m[2] == "entries":
                start, end = int(q["start"]), min(int(q.get("end", lg.size)), lg.size)
                if start >= end:
                    return self._error(404, "not_found", "empty range")
                return self._send(200, cbor.encode(lg.read(start, min(end, start + 1000))), "application/cbor")
            proof = lg.consistency_proof(int(q["from"]), int(q["to"]))
            return self._json({"from": int(q["from"]), "to": int(q["to"]),
                               "proof": [base64.b64encode(h).decode() for h in proof]})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        net = self.net
        try:
            with net.lock:
                if self.path == "/governance/roots":
                    return self._json({"version": net.add_root(body)})
                m = re.fullmatch(r"/logs/([A-Z]{2})/entries(\?wait=final)?", self.path)
                if m is None or m[1] not in net.logs:
                    return self._error(404, "not_found", f"this node serves no log for {self.path}")
                return self._json(net.submit(m[1], cbor.decode(body)))
        except AuthorizationError as e:
            return self._error(403, "not_authorized", str(e))
        except ConflictError as e:
            return self._error(409, "conflict", str(e))
        except VerificationError as e:
            return self._error(422, "verification_failed", str(e))
        except MekongError as e:
            return self._error(400, "bad_request", str(e))
