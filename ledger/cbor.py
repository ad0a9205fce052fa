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
from typing import Any, Union

from ledger.errors import DecodeError

__all__ = ["Tag", "CborLimits", "encode", "decode", "DEFAULT_LIMITS"]

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

CborValue = Union[int, bool, None, bytes, str, list, dict, Tag]


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
                raise ValueError(f"map keys must be integers or text, got {type(k).__name__}")
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


class _Decoder:
    __slots__ = ("data", "pos", "limits", "items")

    def __init__(self, data: bytes, limits: CborLimits) -> None:
        self.data = data
        self.pos = 0
        self.limits = limits
        self.items = 0

    def fail(self, what: str, at: int | None = None) -> DecodeError:
        return DecodeError(f"CBOR: {what} at byte {self.pos if at is None else at}")

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise self.fail(f"truncated input (need {n} more bytes, have {len(self.data) - self.pos})")
        b = self.data[self.pos : end]
        self.pos = end
        return b

    def head(self) -> tuple[int, int, int]:
        start = self.pos
        if start >= len(self.data):
            raise self.fail("truncated input (expected a data item)")
        ib = self.data[start]
        self.pos = start + 1
        major, ai = ib >> 5, ib & 0x1F
        if ai < 24:
            return major, ai, ai
        if ai == 24:
            arg = self.take(1)[0]
            if arg < 24 and major != 7:
                raise self.fail("non-shortest integer argument", start)
        elif ai == 25:
            arg = int.from_bytes(self.take(2), "big")
            if arg < 0x100 and major != 7:
                raise self.fail("non-shortest integer argument", start)
        elif ai == 26:
            arg = int.from_bytes(self.take(4), "big")
            if arg < 0x10000 and major != 7:
                raise self.fail("non-shortest integer argument", start)
        elif ai == 27:
            arg = int.from_bytes(self.take(8), "big")
            if arg < 0x100000000 and major != 7:
                raise self.fail("non-shortest integer argument", start)
        elif ai == 31:
            raise self.fail("indefinite-length item or break code", start)
        else:
            raise self.fail(f"reserved additional information {ai}", start)
        return major, ai, arg

    def item(self, depth: int) -> Any:
        self.items += 1
        if self.items > self.limits.max_items:
            raise self.fail(f"more than {self.limits.max_items} data items")
        start = self.pos
        major, ai, arg = self.head()
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2:
            return bytes(self.take(arg))
        if major == 3:
            raw = self.take(arg)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise self.fail("invalid UTF-8 in text string", start) from e
        if major in (4, 5, 6):
            if depth >= self.limits.max_depth:
                raise self.fail(f"nesting deeper than {self.limits.max_depth}", start)
            if major == 4:
                if arg > len(self.data) - self.pos:
                    raise self.fail(f"array of {arg} items cannot fit in the input", start)
                return [self.item(depth + 1) for _ in range(arg)]
            if major == 5:
                if 2 * arg > len(self.data) - self.pos:
                    raise self.fail(f"map of {arg} pairs cannot fit in the input", start)
                result: dict[Any, Any] = {}
                prev_key = b""
                ordered = self.limits.deterministic
                for i in range(arg):
                    kstart = self.pos
                    key = self.item(depth + 1)
                    if isinstance(key, bool) or not isinstance(key, (int, str)):
                        raise self.fail("map key is not an integer or text string", kstart)
                    if ordered:
                        kbytes = self.data[kstart : self.pos]
                        if i and kbytes <= prev_key:
                            what = "duplicate map key" if kbytes == prev_key else "map keys not in bytewise order"
                            raise self.fail(f"{what} {key!r}", kstart)
                        prev_key = kbytes
                    elif key in result:
                        raise self.fail(f"duplicate map key {key!r}", kstart)
                    result[key] = self.item(depth + 1)
                return result
            if arg not in self.limits.allowed_tags:
                raise self.fail(f"unexpected tag {arg}", start)
            return Tag(arg, self.item(depth + 1))
        # major 7
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai == 22:
            return None
        if ai in (25, 26, 27):
            raise self.fail("floating-point values are not allowed", start)
        raise self.fail(f"simple value {arg} is not allowed", start)


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
            holds a float, an unexpected tag or simple value, or breaks a limit.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"CBOR: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > limits.max_size:
        raise DecodeError(f"CBOR: input of {len(data)} bytes exceeds the limit of {limits.max_size}")
    dec = _Decoder(data, limits)
    try:
        value = dec.item(0)
    except RecursionError as e:
        # Reachable only when a caller sets max_depth beyond what the Python
        # stack allows; still a refusal of the input, never a crash (spec 1.3).
        raise DecodeError(f"CBOR: nesting too deep for the decoder at byte {dec.pos}") from e
    if dec.pos != len(data):
        raise DecodeError(f"CBOR: {len(data) - dec.pos} trailing bytes after the data item at byte {dec.pos}")
    return value

