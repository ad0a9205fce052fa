"""Authentication of state-changing requests between member nodes (specs/api.md section A.2).

Reads are public. A request that changes a node's state on behalf of a peer
(pushing replicated entries, asking for a cosignature, announcing a root) carries
an ``Authorization`` header signed with the sending member's node key:

    Authorization: Mekong-Node member=VN, time=1764370000, sig=<base64>

The signature is Ed25519 over the bytes::

    "mekong-node-request/v1\\n" METHOD "\\n" PATH "\\n" time "\\n" hex(SHA-256(body))

The receiver looks the member's node key up in its current governance root and
refuses requests whose time is more than ``max_skew`` seconds from its own clock.
Every signed object in the body is still verified on its own; this header only
says which member sent the request, for rate limits and for refusing strangers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable

import nacl.signing

from ledger.errors import AuthorizationError, DecodeError, VerificationError
from ledger.keys import verify_ed25519

SCHEME = "Mekong-Node"
_DOMAIN = b"mekong-node-request/v1\n"
_HEADER = re.compile(r"^Mekong-Node member=([A-Z]{2}), time=(0|[1-9][0-9]{0,11}), sig=([A-Za-z0-9+/]{86}==)$")


def _message(method: str, path: str, timestamp: int, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return _DOMAIN + f"{method.upper()}\n{path}\n{timestamp}\n{digest}".encode()


def sign_request(member: str, signing_key: nacl.signing.SigningKey, method: str, path: str,
                 body: bytes, now: int) -> str:
    """Return the ``Authorization`` header value for a request (section A.2)."""
    sig = signing_key.sign(_message(method, path, now, body)).signature
    return f"{SCHEME} member={member}, time={now}, sig={base64.b64encode(sig).decode()}"


def verify_request(header: str | None, method: str, path: str, body: bytes, now: int,
                   node_key_of: Callable[[str], bytes | None], max_skew: int = 300) -> str:
    """Check a request's ``Authorization`` header and return the sending member id.

    Args:
        header: the header value, or None when absent.
        method, path, body: the request as received (path without query string).
        now: the receiver's clock, in seconds.
        node_key_of: looks up a member's node public key in the current root;
            None for a member it does not know.
        max_skew: how far the request time may be from ``now``.

    Raises:
        DecodeError: the header is missing or malformed.
        AuthorizationError: unknown member, or a time outside the window.
        VerificationError: the signature does not verify.
    """
    if not header:
        raise AuthorizationError("this request must be signed by a member node (Authorization: Mekong-Node ...)")
    match = _HEADER.match(header)
    if match is None:
        raise DecodeError("malformed Authorization header; expected 'Mekong-Node member=XX, time=N, sig=BASE64'")
    member, ts_text, sig_text = match.groups()
    timestamp = int(ts_text)
    if abs(now - timestamp) > max_skew:
        raise AuthorizationError(f"request time {timestamp} is more than {max_skew} s from this node's clock {now}")
    key = node_key_of(member)
    if key is None:
        raise AuthorizationError(f"member {member} is not in this node's governance root")
    try:
        sig = base64.b64decode(sig_text, validate=True)
    except binascii.Error as e:
        raise DecodeError("Authorization signature is not valid base64") from e
    try:
        verify_ed25519(key, _message(method, path, timestamp, body), sig)
    except VerificationError as e:
        raise VerificationError(f"request signature of member {member} does not verify") from e
    return member
