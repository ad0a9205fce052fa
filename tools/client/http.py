"""A small synchronous HTTP client for the node API (specs/api.md), over ``urllib.request``.

The CLI talks to nodes only through :class:`NodeClient`. Every failure is a
:class:`ClientError` (a :class:`~ledger.errors.MekongError`) whose message
names the node: ``node http://127.0.0.1:7101 unreachable: Connection
refused`` when nothing answers, or the node's own ``{"error", "message"}``
body when it refuses a request. Answers are size-limited and decoded
strictly; nothing a node sends is trusted here: checking signatures, proofs
and quorums is the caller's business (:mod:`tools.client.replica`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ledger import cbor
from ledger.errors import DecodeError, MekongError
from ledger.roots import SignedRoot

__all__ = ["ClientError", "NodeClient", "NodeRefused", "NodeUnreachable", "check_url", "fetch_roots"]

#: Default time allowed for one request, in seconds.
DEFAULT_TIMEOUT = 15.0
#: ``?wait=final`` may take the node's witness quorum timeout; allow for it.
WAIT_FINAL_TIMEOUT = 60.0
#: Largest answer read from a node (an entries page is at most 1000 entries of 64 KiB).
MAX_RESPONSE_BYTES = 1000 * (1 << 16) + (1 << 16)
#: Most entries the node serves in one page (specs/api.md A.7.3).
ENTRIES_PAGE = 1000
_ENTRIES_LIMITS = cbor.CborLimits(max_size=MAX_RESPONSE_BYTES, max_depth=2, max_items=ENTRIES_PAGE + 1)


class ClientError(MekongError):
    """A request to a node failed; the message names the node and says why.

    Attributes:
        url: the node's base URL.
    """

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url


class NodeUnreachable(ClientError):
    """Nothing answered at the node's URL (refused, timed out, name not resolved)."""


class NodeRefused(ClientError):
    """The node answered with an HTTP error status.

    Attributes:
        status: the HTTP status.
        kind: the ``error`` field of the node's JSON body (or ``"http_error"``).
        detail: the node's ``message``, or the start of its body.
    """

    def __init__(self, url: str, status: int, kind: str, detail: str) -> None:
        super().__init__(url, f"node {url} refused the request ({status} {kind}): {detail}")
        self.status = status
        self.kind = kind
        self.detail = detail


#: Environment variable naming a PEM CA bundle to verify https:// nodes against (default: the system store).
CA_FILE_ENV = "MEKONG_CA_FILE"


def _tls_context() -> ssl.SSLContext:
    ca = os.environ.get(CA_FILE_ENV) or None
    return ssl.create_default_context(cafile=ca)


def check_url(url: str) -> str:
    """Check that ``url`` is an ``http://`` or ``https://`` base URL and return it without a trailing slash.

    Raises:
        ClientError: anything else (a typo in ``--node``).
    """
    url = url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ClientError(url, f"{url!r} is not a node URL; expected something like http://127.0.0.1:7101")
    try:
        _ = parts.port
    except ValueError as e:
        raise ClientError(url, f"{url!r} is not a node URL: {e}") from e
    return url


class NodeClient:
    """One node's API.

    Args:
        url: the node's base URL, such as ``http://127.0.0.1:7101``.
        timeout: seconds allowed for each request.

    Raises:
        ClientError: ``url`` is not an http(s) URL.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = check_url(url)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"NodeClient({self.url!r})"

    # ------------------------------------------------------------------ transport

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                timeout: float | None = None, not_found_ok: bool = False) -> tuple[int, str, bytes] | None:
        """Send one request and return ``(status, content type, body)``.

        Args:
            method: ``GET`` or ``POST``.
            path: the path and query, starting with ``/``.
            body: the request body, for POST.
            content_type: its media type.
            timeout: seconds, instead of the client's default.
            not_found_ok: return None for a 404 instead of raising.

        Raises:
            NodeUnreachable: the connection failed or timed out.
            NodeRefused: an HTTP error status (other than an allowed 404).
            ClientError: the answer is larger than :data:`MAX_RESPONSE_BYTES`.
        """
        headers = {"Accept": "application/json, application/cbor, text/plain"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=self._tls()) as resp:
                data = resp.read(MAX_RESPONSE_BYTES + 1)
                ctype = resp.headers.get_content_type()
                status = resp.status
        except urllib.error.HTTPError as e:
            if e.code == 404 and not_found_ok:
                return None
            raise self._refusal(e) from None
        except urllib.error.URLError as e:
            reason = e.reason.strerror if isinstance(e.reason, OSError) and e.reason.strerror else e.reason
            raise NodeUnreachable(self.url, f"node {self.url} unreachable: {reason}") from None
        except TimeoutError:
            raise NodeUnreachable(self.url, f"node {self.url} unreachable: no answer within "
                                            f"{timeout or self.timeout:g} s") from None
        except (OSError, ValueError) as e:  # connection reset, bad status line
            raise NodeUnreachable(self.url, f"node {self.url} unreachable: {e}") from None
        if len(data) > MAX_RESPONSE_BYTES:
            raise ClientError(self.url, f"node {self.url} sent more than {MAX_RESPONSE_BYTES} bytes for {path}")
        return status, ctype, data

    def _tls(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        try:
            return _tls_context()
        except (OSError, ssl.SSLError) as e:
            raise ClientError(self.url, f"cannot use the CA file {os.environ.get(CA_FILE_ENV)} ({CA_FILE_ENV}) to"
                                        f" check {self.url}: {getattr(e, 'strerror', None) or e}") from None

    def _refusal(self, e: urllib.error.HTTPError) -> NodeRefused:
        try:
            raw = e.read(1 << 16)
        except OSError:
            raw = b""
        kind, detail = "http_error", raw.decode("utf-8", "replace").strip()[:500] or str(e.reason)
        try:
            doc = json.loads(raw)
            if isinstance(doc, dict) and isinstance(doc.get("message"), str):
                kind, detail = str(doc.get("error", kind)), doc["message"]
        except ValueError:
            pass
        return NodeRefused(self.url, e.code, kind, detail)

    def _get(self, path: str, *, not_found_ok: bool = False) -> bytes | None:
        got = self.request("GET", path, not_found_ok=not_found_ok)
        return None if got is None else got[2]

    def get_json(self, path: str) -> Any:
        """GET ``path`` and decode the JSON answer.

        Raises:
            ClientError: the request failed or the answer is not JSON.
        """
        data = self._get(path)
        assert data is not None
        try:
            return json.loads(data)
        except ValueError as e:
            raise ClientError(self.url, f"node {self.url} sent malformed JSON for {path}: {e}") from e

    def _post_json(self, path: str, body: bytes, content_type: str, timeout: float | None = None) -> Any:
        got = self.request("POST", path, body, content_type, timeout=timeout)
        assert got is not None
        try:
            return json.loads(got[2])
        except ValueError as e:
            raise ClientError(self.url, f"node {self.url} sent malformed JSON for {path}: {e}") from e

    def _bad(self, what: str, e: Exception | str) -> ClientError:
        return ClientError(self.url, f"node {self.url} sent a malformed {what}: {e}")

    # ------------------------------------------------------------------ reads (specs/api.md A.7, A.11)

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: member and network of the node."""
        doc = self.get_json("/healthz")
        if not isinstance(doc, dict):
            raise self._bad("health answer", "not a JSON object")
        return doc

    def status(self) -> dict[str, Any]:
        """``GET /status``: member, network, root version and log sizes."""
        doc = self.get_json("/status")
        if not isinstance(doc, dict):
            raise self._bad("status answer", "not a JSON object")
        return doc

    def root_versions(self) -> tuple[list[int], int]:
        """``GET /governance/roots``: the root versions the node holds and its current one."""
        doc = self.get_json("/governance/roots")
        try:
            versions = [int(v) for v in doc["versions"] if type(v) is int]
            current = doc["current"]
            if type(current) is not int or current < 1:
                raise ValueError(f"current {current!r}")
        except (KeyError, TypeError, ValueError) as e:
            raise self._bad("governance root list", e) from e
        return versions, current

    def current_root_version(self) -> int:
        """The node's current governance root version."""
        return self.root_versions()[1]

    def root(self, version: int) -> bytes:
        """``GET /governance/roots/{v}``: the signed root bytes (unverified)."""
        data = self._get(f"/governance/roots/{int(version)}")
        assert data is not None
        return data

    def checkpoint(self, member: str, covering: int | None = None, wait: int = 0) -> bytes | None:
        """``GET /logs/{M}/checkpoint``: the node's newest final checkpoint note, or None if it has none.

        With ``covering``, the oldest final checkpoint whose size exceeds that entry index (specs/api.md A.7.2);
        with ``wait`` (the owner's node), it waits up to that many seconds for one to become final.
        """
        query = "" if covering is None else f"?covering={int(covering)}" + (f"&wait={int(wait)}" if wait else "")
        got = self.request("GET", f"/logs/{urllib.parse.quote(member, safe='')}/checkpoint{query}",
                           timeout=self.timeout + wait, not_found_ok=True)
        return None if got is None else got[2]

    def entries(self, member: str, start: int, end: int) -> list[bytes]:
        """``GET /logs/{M}/entries``: entries ``[start, end)`` as stored (at most 1000; maybe fewer).

        Raises:
            ClientError: the request failed, or the answer is not a CBOR array of byte strings.
        """
        data = self._get(f"/logs/{urllib.parse.quote(member, safe='')}/entries?start={int(start)}&end={int(end)}")
        assert data is not None
        try:
            raws = cbor.decode(data, _ENTRIES_LIMITS)
        except DecodeError as e:
            raise self._bad(f"entries page of log {member}", e) from e
        if not isinstance(raws, list) or not raws or not all(isinstance(r, bytes) for r in raws):
            raise self._bad(f"entries page of log {member}", "not a non-empty CBOR array of byte strings")
        if len(raws) > end - start:
            raise self._bad(f"entries page of log {member}", f"{len(raws)} entries for [{start}, {end})")
        return raws

    def consistency_proof(self, member: str, first: int, second: int) -> list[bytes]:
        """``GET /logs/{M}/proof/consistency``: the proof hashes (unverified)."""
        doc = self.get_json(f"/logs/{urllib.parse.quote(member, safe='')}/proof/consistency"
                            f"?from={int(first)}&to={int(second)}")
        return self._hashes(doc, f"consistency proof of log {member}")

    def inclusion_proof(self, member: str, index: int, size: int) -> list[bytes]:
        """``GET /logs/{M}/proof/inclusion``: the proof hashes of entry ``index`` in the tree of ``size`` (unverified)."""
        doc = self.get_json(f"/logs/{urllib.parse.quote(member, safe='')}/proof/inclusion"
                            f"?index={int(index)}&size={int(size)}")
        return self._hashes(doc, f"inclusion proof of log {member}")

    def state(self, member: str, keys: list[bytes]) -> bytes:
        """``GET /logs/{M}/state?key=...``: the CBOR state answer of specs/api.md A.13 (unverified).

        Args:
            keys: each state key's CBOR (``ledger.state.StateKey.encode``).
        """
        query = "&".join("key=" + base64.urlsafe_b64encode(k).decode("ascii").rstrip("=") for k in keys)
        data = self._get(f"/logs/{urllib.parse.quote(member, safe='')}/state?{query}")
        assert data is not None
        return data

    def _hashes(self, doc: Any, what: str) -> list[bytes]:
        try:
            out = [base64.b64decode(h, validate=True) for h in doc["proof"]]
        except (KeyError, TypeError, ValueError, binascii.Error) as e:
            raise self._bad(what, e) from e
        if any(len(h) != 32 for h in out):
            raise self._bad(what, "a hash that is not 32 bytes")
        return out

    # ------------------------------------------------------------------ submissions

    def submit_entries(self, member: str, raws: list[bytes], *, wait_final: bool = True) -> dict[str, Any]:
        """``POST /logs/{M}/entries[?wait=final]``: submit signed entries to the log's owner node.

        Returns:
            The node's answer: ``indices``, ``size`` and, when waiting,
            ``final_size`` and ``checkpoint`` (None when the quorum did not answer in time).

        Raises:
            NodeRefused: the node refused (its message names the rule), or is not the owner (421).
            NodeUnreachable: nothing answered.
        """
        path = f"/logs/{urllib.parse.quote(member, safe='')}/entries" + ("?wait=final" if wait_final else "")
        doc = self._post_json(path, cbor.encode(list(raws)), "application/cbor",
                              timeout=WAIT_FINAL_TIMEOUT if wait_final else None)
        if not isinstance(doc, dict) or not isinstance(doc.get("indices"), list):
            raise self._bad("submission answer", "no indices")
        return doc

    def submit_root(self, signed_root: bytes) -> dict[str, Any]:
        """``POST /governance/roots``: submit the next signed governance root.

        Raises:
            NodeRefused: the root is malformed (400), invalid (422, naming the rule) or equivocates (409).
        """
        doc = self._post_json("/governance/roots", signed_root, "application/cbor")
        if not isinstance(doc, dict):
            raise self._bad("governance answer", "not a JSON object")
        return doc


def fetch_roots(client: NodeClient) -> tuple[SignedRoot, list[SignedRoot]]:
    """Every signed governance root the node holds, as (version 1, the later ones), decoded but not verified.

    Walk them from a pinned genesis (:func:`ledger.governance.walk`) before believing any.

    Raises:
        ClientError: the node failed or sent something malformed.
    """
    versions, _ = client.root_versions()
    roots = []
    for v in sorted(set(versions) | {1}):
        data = client.root(v)
        try:
            roots.append(SignedRoot.from_cbor(data))
        except DecodeError as e:
            raise ClientError(client.url, f"node {client.url} sent a malformed governance root version {v}: {e}") from None
    genesis = [r for r in roots if r.root.version == 1]
    return genesis[0], [r for r in roots if r.root.version != 1]
