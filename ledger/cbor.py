"""Deterministic CBOR: the one canonical encoder and a strict decoder.

Implements the core deterministic encoding of RFC 8949 section 4.2.1
(specs/01-encoding.md): shortest-form arguments, definite lengths only, and map
keys sorted by the bytewise order of their encodings (not the length-first
order of section 4.2.3 that ``cbor2``'s ``canonical=True`` produces).

The data model is deliberately small, because every value here may end up in
a signed payload: unsigned and negative integers within 64 bits, byte
strings, UTF-8 text, arrays, maps with integer or text keys, ``false``,
``true``, ``null`` and tags the caller allows. Floats are refused both ways.

:func:`decode` is for untrusted bytes: it accepts exactly the encodings
:func:`encode` produces, so ``encode(decode(b)) == b`` for every accepted
``b`` (unless the caller relaxes key order for foreign payloads), and it
enforces the size, depth and item limits of
:class:`CborLimits`. Every failure is a :class:`~ledger.errors.DecodeError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.errors import DecodeError

__all__ = ["DEFAULT_LIMITS", "CborLimits", "Tag", "bstr_head", "decode", "encode", "encode_head"]

_UINT64_MAX = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Tag:
    """A CBOR tagged data item (major type 6)."""

    tag: int
    value: Any

    def __post_init__(self) -> None:
        if not isinstance(self.tag, int) or not 0 <= self.tag <= _UINT64_MAX:
            raise ValueError(f"CBOR tag number out of range: {self.tag!r}")


@dataclass(frozen=True, slots=True)
class CborLimits:
    """Bounds applied while decoding untrusted bytes (specs/01-encoding.md section 1.3).

    Attributes:
        max_size: largest input accepted, in bytes.
        max_depth: deepest nesting of arrays, maps and tags.
        max_items: most data items in one input, counting every nested item.
        allowed_tags: tag numbers that may appear; any other tag is refused.
        deterministic: when true (the default, for everything the ledger
            signs or stores), map keys must be in bytewise order. When false,
            key order is free but duplicate keys are still refused: this is
            only for payloads made by other COSE/CWT implementations, which
            are verified over the bytes received and never re-encoded.
    """

    max_size: int = 1 << 20
    max_depth: int = 16
    max_items: int = 65536
    allowed_tags: frozenset[int] = frozenset()
    deterministic: bool = True


DEFAULT_LIMITS = CborLimits()

CborValue = int | bool | None | bytes | str | list | dict | Tag


# --------------------------------------------------------------------------- encoder


def _head(major: int, arg: int) -> bytes:
    mt = major << 5
    if arg < 24:
        return bytes((mt | arg,))
    if arg < 0x100:
        return bytes((mt | 24, arg))
    if arg < 0x10000:
        return bytes((mt | 25,)) + arg.to_bytes(2, "big")
    if arg < 0x100000000:
        return bytes((mt | 26,)) + arg.to_bytes(4, "big")
    return bytes((mt | 27,)) + arg.to_bytes(8, "big")


def bstr_head(n: int) -> bytes:
    """The head :func:`encode` writes before a byte string of ``n`` bytes (spec 1.2.1)."""
    return _head(2, n)


def encode_head(major: int, arg: int) -> bytes:
    """The head :func:`encode` writes for major type ``major`` (0 to 5) with argument ``arg`` (spec 1.2.1).

    For hot paths that build a small fixed-shape item by concatenation (``ledger.state``); they are
    tested byte for byte against :func:`encode`.
    """
    if not 0 <= major <= 5 or not 0 <= arg < 1 << 64:
        raise ValueError("a CBOR head takes major type 0 to 5 and an argument below 2^64")
    return _head(major, arg)


def _encode_into(obj: Any, out: list[bytes]) -> None:
    # bool before int: bool is a subclass of int.
    if obj is False:
        out.append(b"\xf4")
    elif obj is True:
        out.append(b"\xf5")
    elif obj is None:
        out.append(b"\xf6")
    elif isinstance(obj, int):
        if 0 <= obj <= _UINT64_MAX:
            out.append(_head(0, obj))
        elif -(1 << 64) <= obj < 0:
            out.append(_head(1, -1 - obj))
        else:
            raise ValueError(f"integer out of the 64-bit CBOR range: {obj}")
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        b = bytes(obj)
        out.append(_head(2, len(b)))
        out.append(b)
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        out.append(_head(3, len(b)))
        out.append(b)
    elif isinstance(obj, (list, tuple)):
        out.append(_head(4, len(obj)))
        for item in obj:
            _encode_into(item, out)
    elif isinstance(obj, dict):
        pairs = []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (int, str)):
                raise ValueError(f"map keys must be integers or text, got {type(k).__name__}")  # noqa: TRY004
            pairs.append((encode(k), v))
        pairs.sort(key=lambda kv: kv[0])
        out.append(_head(5, len(pairs)))
        for kb, v in pairs:
            out.append(kb)
            _encode_into(v, out)
    elif isinstance(obj, Tag):
        out.append(_head(6, obj.tag))
        _encode_into(obj.value, out)
    elif isinstance(obj, float):
        raise ValueError("floats are not allowed in deterministic payloads")
    else:
        raise ValueError(f"type {type(obj).__name__} cannot be encoded as CBOR")


def encode(obj: Any) -> bytes:
    """Encode ``obj`` in RFC 8949 section 4.2.1 core deterministic CBOR.

    Tuples encode as arrays. Map keys must be integers or text, and are
    ordered by the bytewise order of their encodings.

    Raises:
        ValueError: for floats, out-of-range integers, or unsupported types
            (a programming error, never caused by untrusted input).
    """
    out: list[bytes] = []
    _encode_into(obj, out)
    return b"".join(out)


# --------------------------------------------------------------------------- decoder
#
# One recursive function, _item(), returns (value, end) for the data item at
# a position; the input and the limits travel as arguments, so reading an
# item costs no attribute lookups and no method dispatch. Inside maps and
# arrays the commonest items (small unsigned integers, short text and byte
# strings, false/true/null) are read inline, without a call. Every refusal of
# spec 1.3.2 holds on every path: the inline paths take only initial bytes
# whose item needs no further check beyond the ones they make.
#
# Reads past the end: data[pos] raises IndexError, which decode() reports as
# truncation at the end of the input. Every multi-byte read checks its end
# first, so no value is ever read from a short slice, and no position ever
# passes the end of the input.

_ARG_WIDTH = (1, 2, 4, 8)  # additional information 24..27
_ARG_MIN = (24, 0x100, 0x10000, 0x100000000)  # smallest argument each width may carry (spec 1.2.1)
_SIMPLE = (False, True, None)  # simple values 20, 21, 22
_from_bytes = int.from_bytes


def _fail(what: str, at: int) -> DecodeError:
    return DecodeError(f"CBOR: {what} at byte {at}")


def _truncated(need: int, have: int, at: int) -> DecodeError:
    return _fail(f"truncated input (need {need} more bytes, have {have})", at)


def _bad_key(key: Any, kbytes: bytes, prev: bytes, at: int) -> DecodeError:
    what = "duplicate map key" if kbytes == prev else "map keys not in bytewise order"
    return _fail(f"{what} {key!r:.80}", at)


def _tag(number: int, value: Any) -> Tag:
    # The number comes from a decoded head, so it is in range: skip Tag's check.
    t = object.__new__(Tag)
    object.__setattr__(t, "tag", number)
    object.__setattr__(t, "value", value)
    return t


def _item(d: bytes, pos: int, depth: int, n: int, max_depth: int, ordered: bool, tags: frozenset[int],
          budget: list[int] | None) -> tuple[Any, int]:
    """The data item at ``pos`` of ``d`` (``n`` bytes): its value and where it ends.

    ``depth`` counts the containers around it; ``budget``, when not None,
    holds how many more data items the input may have (see decode()).
    """
    start = pos
    ib = d[pos]
    if ib < 0x18:
        return ib, pos + 1
    major = ib >> 5
    ai = ib & 0x1F
    pos += 1
    # The head's argument (spec 1.2.1, 1.3.2 refusals 5 to 7).
    if ai < 24:
        arg = ai
    elif ai < 28:
        if ai == 24:
            arg = d[pos]
            pos += 1
        else:
            end = pos + _ARG_WIDTH[ai - 24]
            if end > n:
                raise _truncated(end - pos, n - pos, pos)
            arg = _from_bytes(d[pos:end], "big")
            pos = end
        if arg < _ARG_MIN[ai - 24] and major != 7:
            raise _fail("non-shortest integer argument", start)
    elif ai == 31:
        raise _fail("indefinite-length item or break code", start)
    else:
        raise _fail(f"reserved additional information {ai}", start)

    if major == 5:
        if depth >= max_depth:
            raise _fail(f"nesting deeper than {max_depth}", start)
        if 2 * arg > n - pos:
            raise _fail(f"map of {arg} pairs cannot fit in the input", start)
        if budget is not None:
            budget[0] -= 2 * arg
            if budget[0] < 0:
                raise _fail(f"more than {budget[1]} data items", start)
        depth += 1
        m: dict[Any, Any] = {}
        prev = b""
        for _ in range(arg):
            # The key: an integer or a text string (spec 1.1.5), told by its initial byte.
            kstart = pos
            b = d[pos]
            if 0x60 <= b < 0x78:
                pos += b - 0x5F
                if pos > n:
                    raise _truncated(b - 0x60, n - kstart - 1, kstart + 1)
                try:
                    key: Any = d[kstart + 1:pos].decode()
                except UnicodeDecodeError as e:
                    raise _fail("invalid UTF-8 in text string", kstart) from e
            elif b < 0x18:
                key = b
                pos += 1
            elif b < 0x40 or 0x78 <= b < 0x80:
                key, pos = _item(d, pos, depth, n, max_depth, ordered, tags, budget)
            else:
                raise _fail("map key is not an integer or text string", kstart)
            # Spec 1.3.2 refusal 14.
            if ordered:
                kb = d[kstart:pos]
                if kb <= prev:
                    raise _bad_key(key, kb, prev, kstart)
                prev = kb
            elif key in m:
                raise _fail(f"duplicate map key {key!r:.80}", kstart)
            # The value.
            b = d[pos]
            if 0x60 <= b < 0x78:
                end = pos + b - 0x5F
                if end > n:
                    raise _truncated(b - 0x60, n - pos - 1, pos + 1)
                try:
                    m[key] = d[pos + 1:end].decode()
                except UnicodeDecodeError as e:
                    raise _fail("invalid UTF-8 in text string", pos) from e
                pos = end
            elif b < 0x18:
                m[key] = b
                pos += 1
            elif 0x40 <= b < 0x58:
                end = pos + b - 0x3F
                if end > n:
                    raise _truncated(b - 0x40, n - pos - 1, pos + 1)
                m[key] = d[pos + 1:end]
                pos = end
            elif 0xF4 <= b <= 0xF6:
                m[key] = _SIMPLE[b - 0xF4]
                pos += 1
            elif b == 0x1A:  # a 32-bit unsigned integer: times, amounts
                end = pos + 5
                if end > n:
                    raise _truncated(4, n - pos - 1, pos + 1)
                v = _from_bytes(d[pos + 1:end], "big")
                if v < 0x10000:
                    raise _fail("non-shortest integer argument", pos)
                m[key] = v
                pos = end
            else:
                m[key], pos = _item(d, pos, depth, n, max_depth, ordered, tags, budget)
        return m, pos

    if major == 4:
        if depth >= max_depth:
            raise _fail(f"nesting deeper than {max_depth}", start)
        if arg > n - pos:
            raise _fail(f"array of {arg} items cannot fit in the input", start)
        if budget is not None:
            budget[0] -= arg
            if budget[0] < 0:
                raise _fail(f"more than {budget[1]} data items", start)
        depth += 1
        out: list[Any] = []
        append = out.append
        for _ in range(arg):
            b = d[pos]
            if 0x60 <= b < 0x78:
                end = pos + b - 0x5F
                if end > n:
                    raise _truncated(b - 0x60, n - pos - 1, pos + 1)
                try:
                    append(d[pos + 1:end].decode())
                except UnicodeDecodeError as e:
                    raise _fail("invalid UTF-8 in text string", pos) from e
                pos = end
            elif b < 0x18:
                append(b)
                pos += 1
            elif 0x40 <= b < 0x58:
                end = pos + b - 0x3F
                if end > n:
                    raise _truncated(b - 0x40, n - pos - 1, pos + 1)
                append(d[pos + 1:end])
                pos = end
            else:
                v, pos = _item(d, pos, depth, n, max_depth, ordered, tags, budget)
                append(v)
        return out, pos

    if major == 3 or major == 2:
        end = pos + arg
        if end > n:
            raise _truncated(arg, n - pos, pos)
        if major == 2:
            return d[pos:end], end
        try:
            return d[pos:end].decode(), end
        except UnicodeDecodeError as e:
            raise _fail("invalid UTF-8 in text string", start) from e
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos

    if major == 6:
        if depth >= max_depth:
            raise _fail(f"nesting deeper than {max_depth}", start)
        if arg not in tags:
            raise _fail(f"unexpected tag {arg}", start)
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise _fail(f"more than {budget[1]} data items", start)
        v, pos = _item(d, pos, depth + 1, n, max_depth, ordered, tags, budget)
        return _tag(arg, v), pos

    # Major type 7 (spec 1.1.2, 1.1.4).
    if 20 <= ai <= 22:
        return _SIMPLE[ai - 20], pos
    if ai >= 25:
        raise _fail("floating-point values are not allowed", start)
    raise _fail(f"simple value {arg} is not allowed", start)


def decode(data: bytes, limits: CborLimits = DEFAULT_LIMITS) -> Any:
    """Decode one deterministic CBOR data item that fills ``data`` exactly.

    Args:
        data: untrusted bytes.
        limits: size, depth, item-count and tag bounds.

    Returns:
        ints, bools, None, bytes, str, lists, dicts and :class:`Tag` values.

    Raises:
        DecodeError: the input is malformed, not deterministic (non-shortest
            arguments, indefinite lengths, unsorted or duplicate map keys),
            holds a float, an unexpected tag or simple value, or breaks a
            limit. The message says what is wrong and at which byte.
    """
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"CBOR: expected bytes, got {type(data).__name__}")
        data = bytes(data)
    n = len(data)
    if n > limits.max_size:
        raise DecodeError(f"CBOR: input of {n} bytes exceeds the limit of {limits.max_size}")
    max_items = limits.max_items
    # Every data item takes at least one byte, so an input no longer than
    # max_items cannot break that limit, and items are not counted. Otherwise
    # each container subtracts the items its head declares from the budget
    # (spec 1.3.1); the top-level item is the first.
    budget = None
    if n > max_items:
        if max_items < 1:
            raise DecodeError(f"CBOR: more than {max_items} data items at byte 0")
        budget = [max_items - 1, max_items]
    try:
        value, end = _item(data, 0, 0, n, limits.max_depth, limits.deterministic, limits.allowed_tags, budget)
    except IndexError:
        # Raised only by a read at the end of the input (see above).
        raise DecodeError(f"CBOR: truncated input (it ends inside a data item) at byte {n}") from None
    except RecursionError as e:
        # Reachable only when a caller sets max_depth beyond what the Python
        # stack allows; still a refusal of the input, never a crash (spec 1.3).
        raise DecodeError(f"CBOR: nesting deeper than the decoder's stack allows (max_depth is "
                          f"{limits.max_depth})") from e
    if end != n:
        raise DecodeError(f"CBOR: {n - end} trailing bytes after the data item at byte {end}")
    return value
