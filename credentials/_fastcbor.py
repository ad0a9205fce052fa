"""A faster twin of :func:`ledger.cbor.decode` and :meth:`ledger.cose.UnverifiedSign1.decode` for the verifier.

The verifier's budget is a fraction of one Ed25519 verification per
credential, and the general decoder in :mod:`ledger.cbor` spends about half
of that on a typical payload. This module decodes the same language faster by
returning ``(value, position)`` pairs, reading short text keys inline and
bounding the item count by the input length instead of counting.

It is a fast path, not a second authority: it accepts only input that
:func:`ledger.cbor.decode` accepts, with an equal value, and on anything it
does not handle (or any failure) it calls the ledger decoder, whose answer,
value or :class:`~ledger.errors.DecodeError` with its message, is returned.
``tests/credentials/test_fastcbor.py`` checks the agreement with hypothesis on
random and mutated inputs.
"""

from __future__ import annotations

from typing import Any

from ledger import cbor, cose
from ledger.errors import DecodeError

__all__ = ["decode", "decode_sign1"]

_from_bytes = int.from_bytes


class _Slow(Exception):
    """Internal: leave this input to the general decoder."""


def _item(data: bytes, pos: int, depth: int, ordered: bool, tags: frozenset[int],
          max_depth: int) -> tuple[Any, int]:
    ib = data[pos]
    pos += 1
    major = ib >> 5
    ai = ib & 31
    if ai < 24:
        arg = ai
    elif ai == 24:
        arg = data[pos]
        pos += 1
        if arg < 24:
            raise _Slow
    elif ai == 25:
        arg = _from_bytes(data[pos:pos + 2], "big")
        pos += 2
        if arg < 0x100:
            raise _Slow
    elif ai == 26:
        arg = _from_bytes(data[pos:pos + 4], "big")
        pos += 4
        if arg < 0x10000:
            raise _Slow
    elif ai == 27:
        arg = _from_bytes(data[pos:pos + 8], "big")
        pos += 8
        if arg < 0x100000000:
            raise _Slow
    else:
        raise _Slow
    if pos > len(data):
        raise _Slow
    if major == 0:
        return arg, pos
    if major == 3:
        end = pos + arg
        if end > len(data):
            raise _Slow
        return data[pos:end].decode("utf-8"), end  # UnicodeDecodeError -> slow path
    if major == 2:
        end = pos + arg
        if end > len(data):
            raise _Slow
        return data[pos:end], end
    if major == 1:
        return -1 - arg, pos
    if major == 5:
        if depth >= max_depth:
            raise _Slow
        d: dict[Any, Any] = {}
        prev = b""
        for _ in range(arg):
            kstart = pos
            kb = data[pos]
            if 0x60 <= kb < 0x78:
                end = pos + kb - 0x5F
                if end > len(data):
                    raise _Slow
                key: Any = data[pos + 1:end].decode("utf-8")
                pos = end
            else:
                key, pos = _item(data, pos, depth + 1, ordered, tags, max_depth)
                if type(key) is not int and type(key) is not str:
                    raise _Slow
            if ordered:
                kbytes = data[kstart:pos]
                if kbytes <= prev:
                    raise _Slow
                prev = kbytes
            elif key in d:
                raise _Slow
            vb = data[pos]
            if vb < 0x18:
                d[key] = vb
                pos += 1
            elif 0x60 <= vb < 0x78:
                end = pos + vb - 0x5F
                if end > len(data):
                    raise _Slow
                d[key] = data[pos + 1:end].decode("utf-8")
                pos = end
            elif 0x40 <= vb < 0x58:
                end = pos + vb - 0x3F
                if end > len(data):
                    raise _Slow
                d[key] = data[pos + 1:end]
                pos = end
            elif vb == 0x1A:
                v = _from_bytes(data[pos + 1:pos + 5], "big")
                if v < 0x10000 or pos + 5 > len(data):
                    raise _Slow
                d[key] = v
                pos += 5
            else:
                d[key], pos = _item(data, pos, depth + 1, ordered, tags, max_depth)
        return d, pos
    if major == 4:
        if depth >= max_depth:
            raise _Slow
        out: list[Any] = []
        append = out.append
        for _ in range(arg):
            vb = data[pos]
            if vb < 0x18:
                append(vb)
                pos += 1
            elif 0x60 <= vb < 0x78:
                end = pos + vb - 0x5F
                if end > len(data):
                    raise _Slow
                append(data[pos + 1:end].decode("utf-8"))
                pos = end
            else:
                v, pos = _item(data, pos, depth + 1, ordered, tags, max_depth)
                append(v)
        return out, pos
    if major == 6:
        if depth >= max_depth or arg not in tags:
            raise _Slow
        v, pos = _item(data, pos, depth + 1, ordered, tags, max_depth)
        return cbor.Tag(arg, v), pos
    # major 7
    if ai == 20:
        return False, pos
    if ai == 21:
        return True, pos
    if ai == 22:
        return None, pos
    raise _Slow


def decode(data: bytes, limits: cbor.CborLimits = cbor.DEFAULT_LIMITS) -> Any:
    """Decode exactly as :func:`ledger.cbor.decode` does, faster on well-formed input.

    Raises:
        DecodeError: whatever :func:`ledger.cbor.decode` raises for ``data``.
    """
    if type(data) is bytes and len(data) <= limits.max_size and len(data) <= limits.max_items:
        # Every data item takes at least one byte, so an input no longer than
        # max_items cannot hold more items than the limit allows.
        try:
            value, pos = _item(data, 0, 0, limits.deterministic, limits.allowed_tags, limits.max_depth)
            if pos == len(data):
                return value
        except (_Slow, IndexError, UnicodeDecodeError):
            pass
    return cbor.decode(data, limits)


def decode_sign1(data: bytes) -> cose.UnverifiedSign1:
    """Decode a COSE_Sign1 exactly as :meth:`ledger.cose.UnverifiedSign1.decode` does, faster.

    Raises:
        DecodeError: whatever the ledger decoder raises for ``data``.
    """
    if type(data) is bytes:
        fast = _split_own(data)
        if fast is not None:
            return fast
        try:
            return _sign1(data)
        except DecodeError:
            pass
    return cose.UnverifiedSign1.decode(data)


# Tag 18, array(4), bstr(21) holding {1: -8, 4: bstr(16) kid}: the layout credentials.issue produces.
_OWN_PREFIX = b"\xd2\x84\x55\xa2\x01\x27\x04\x50"
_SIG_HEAD = b"\x58\x40"


def _split_own(data: bytes) -> cose.UnverifiedSign1 | None:
    """Slice a COSE_Sign1 laid out exactly as :func:`ledger.cose.sign1` writes it with only a kid.

    Every byte outside the kid, payload and signature is fixed, so the
    ledger decoder would accept it with these same fields; anything else
    returns None and takes the general path.
    """
    if data[:8] != _OWN_PREFIX or len(data) < 93 or data[24] != 0xA0:
        return None
    hb = data[25]
    if 0x40 <= hb < 0x58:
        n, start = hb - 0x40, 26
    elif hb == 0x58:
        n, start = data[26], 27
        if n < 24:
            return None
    elif hb == 0x59:
        n, start = (data[26] << 8) | data[27], 28
        if n < 0x100:
            return None
    else:
        return None
    end = start + n
    if len(data) != end + 66 or data[end:end + 2] != _SIG_HEAD:
        return None
    kid = data[8:24]
    return cose.UnverifiedSign1(data[3:24], {}, data[start:end], data[end + 2:], {1: -8, 4: kid}, data)


_HEADER_LIMITS = cbor.CborLimits(max_size=4096, max_depth=4, max_items=256, deterministic=False)


def _sign1(data: bytes) -> cose.UnverifiedSign1:
    # Mirrors ledger/cose.py spec 2.3 steps 1-4; any refusal re-runs the ledger decoder for its message.
    value = decode(data, cose.SIGN1_LIMITS)
    if isinstance(value, cbor.Tag):
        if value.tag != cose.COSE_SIGN1_TAG:
            raise DecodeError("tag")
        value = value.value
    if type(value) is not list or len(value) != 4:
        raise DecodeError("shape")
    protected, unprotected, payload, signature = value
    if type(protected) is not bytes or type(unprotected) is not dict or type(signature) is not bytes:
        raise DecodeError("types")
    if payload is not None and type(payload) is not bytes:
        raise DecodeError("payload")
    headers = decode(protected, _HEADER_LIMITS) if protected else {}
    if type(headers) is not dict:
        raise DecodeError("headers")
    if unprotected and set(headers) & set(unprotected):
        raise DecodeError("dup")
    if cose.HDR_CRIT in headers or cose.HDR_CRIT in unprotected:
        raise DecodeError("crit")
    if headers.get(cose.HDR_ALG) != cose.ALG_EDDSA or len(signature) != 64:
        raise DecodeError("alg")
    kid = headers.get(cose.HDR_KID, unprotected.get(cose.HDR_KID))
    if kid is not None and type(kid) is not bytes:
        raise DecodeError("kid")
    ctype = headers.get(cose.HDR_CONTENT_TYPE, unprotected.get(cose.HDR_CONTENT_TYPE))
    if ctype is not None and type(ctype) is not str and not (type(ctype) is int and ctype >= 0):
        raise DecodeError("ctype")
    return cose.UnverifiedSign1(protected, unprotected, payload, signature, headers, data)
