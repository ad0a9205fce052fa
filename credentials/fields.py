"""Field codecs and value types shared by the credential profiles (specs/credentials.md section 2).

A profile is a frozen, slotted dataclass whose class attribute ``SCHEMA`` lists
its fields as :class:`Field` entries: the CBOR map key, the Python attribute,
a codec that validates (and, for nested records, converts) the value, and
whether the field is required. :class:`Record` turns that one table into
``__post_init__`` validation, ``to_map`` and ``from_map``, so the checks made
when a program builds a profile are exactly those made when one is decoded
from untrusted bytes.

There are no floats anywhere: money is an integer amount of the currency's
minor unit (ISO 4217 exponent), quantities are decimal strings with a unit
code, dates are ``YYYY-MM-DD`` text, times are integer Unix seconds.

Every failure is a :class:`~ledger.errors.DecodeError` naming the field.
This module leaves map-key order and byte encoding to :mod:`ledger.cbor`.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ledger.bodies import LOA_ORDER
from ledger.errors import DecodeError

__all__ = [
    "BOOL",
    "BYTES16",
    "COUNTRY",
    "CURRENCY",
    "DATE",
    "DECIMAL",
    "HASH_SIZES",
    "HS_CODE",
    "KEY32",
    "LOA",
    "MINOR_UNITS",
    "SHORT_TEXT",
    "TEXT",
    "UINT",
    "UNIT",
    "Codec",
    "Digest",
    "Field",
    "Money",
    "Party",
    "Quantity",
    "Record",
    "loa_at_least",
    "one_of",
    "record",
    "tuple_of",
]

#: Hash algorithms accepted in digests, with their output sizes.
HASH_SIZES: dict[str, int] = {"sha-256": 32, "sha-384": 48, "sha-512": 64}

_COUNTRY_RE = re.compile(r"[A-Z]{2}")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DECIMAL_RE = re.compile(r"(0|[1-9][0-9]{0,30})(\.[0-9]{1,12})?")
_HS_RE = re.compile(r"[0-9]{6}([0-9]{2}([0-9]{2})?)?")
_UNIT_RE = re.compile(r"[A-Z0-9]{1,3}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def loa_at_least(loa: str, minimum: str) -> bool:
    """Whether level of assurance ``loa`` is at least ``minimum`` (both from :data:`LOA_ORDER`)."""
    return LOA_ORDER[loa] >= LOA_ORDER[minimum]


def _same_decoded(value: Any, where: str) -> Any:
    return value


def _same_encoded(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Codec:
    """How one field is checked, and converted between its Python and CBOR forms.

    ``check(value, where)`` raises :class:`DecodeError` or returns the value as
    stored on the dataclass; ``decode(cbor_value, where)`` turns the CBOR form
    into what the constructor takes; ``encode(value)`` is the reverse.
    ``read(cbor_value, where)`` is decode and check in one call, what
    :meth:`Record.from_map` uses; by default it is exactly that, and a codec
    whose decoder already returns a checked value (a nested record, an array)
    gives one that does not check it twice.
    """

    name: str
    check: Callable[[Any, str], Any]
    decode: Callable[[Any, str], Any] = _same_decoded
    encode: Callable[[Any], Any] = _same_encoded
    read: Callable[[Any, str], Any] = None  # type: ignore[assignment]  # set in __post_init__ when not given

    def __post_init__(self) -> None:
        if self.read is None:
            object.__setattr__(self, "read", self.check if self.decode is _same_decoded
                               else _decode_then_check(self.decode, self.check))


def _decode_then_check(decode: Callable[[Any, str], Any], check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def read(v: Any, where: str) -> Any:
        return check(decode(v, where), where)
    return read


@dataclass(frozen=True, slots=True)
class Field:
    """One entry of a record's schema: the map ``key`` (also the attribute name), ``codec``, ``required``."""

    key: str
    codec: Codec
    required: bool = True

def _fail(where: str, what: str) -> DecodeError:
    return DecodeError(f"{where}: {what}")


def _text_check(max_len: int) -> Callable[[Any, str], Any]:
    def check(v: Any, where: str) -> Any:
        if type(v) is not str:
            raise _fail(where, f"expected text, got {type(v).__name__}")
        if not v or len(v) > max_len:
            raise _fail(where, f"text must be 1 to {max_len} characters, got {len(v)}")
        # Control characters are never printable, so most text needs no search.
        if not v.isprintable() and _CONTROL_RE.search(v):
            raise _fail(where, "text must not contain control characters")
        return v
    return check


def _pattern_check(pattern: re.Pattern[str], what: str) -> Callable[[Any, str], Any]:
    def check(v: Any, where: str) -> Any:
        if type(v) is not str or not pattern.fullmatch(v):
            raise _fail(where, f"expected {what}, got {v!r:.60}")
        return v
    return check


def _date_check(v: Any, where: str) -> Any:
    if type(v) is not str or not _DATE_RE.fullmatch(v):
        raise _fail(where, f"expected a date YYYY-MM-DD, got {v!r:.60}")
    try:
        datetime.date.fromisoformat(v)
    except ValueError as e:
        raise _fail(where, f"not a calendar date: {v}") from e
    return v


def _any_bytes_check(v: Any, where: str) -> Any:
    if type(v) is not bytes:
        raise _fail(where, f"expected bytes, got {type(v).__name__}")
    return v


def _uint_check(v: Any, where: str) -> Any:
    if type(v) is not int or v < 0 or v >= 1 << 63:
        raise _fail(where, f"expected an unsigned integer below 2**63, got {v!r:.60}")
    return v


def _bool_check(v: Any, where: str) -> Any:
    if type(v) is not bool:
        raise _fail(where, f"expected true or false, got {type(v).__name__}")
    return v


def _bytes_check(size: int) -> Callable[[Any, str], Any]:
    def check(v: Any, where: str) -> Any:
        if type(v) is not bytes or len(v) != size:
            got = f"{len(v)} bytes" if isinstance(v, bytes) else type(v).__name__
            raise _fail(where, f"expected {size} bytes, got {got}")
        return v
    return check


TEXT = Codec("text", _text_check(512))
SHORT_TEXT = Codec("short text", _text_check(64))
COUNTRY = Codec("country", _pattern_check(_COUNTRY_RE, "an ISO 3166-1 alpha-2 code"))
CURRENCY = Codec("currency", _pattern_check(_CURRENCY_RE, "an ISO 4217 currency code"))
DATE = Codec("date", _date_check)
DECIMAL = Codec("decimal", _pattern_check(_DECIMAL_RE, "a non-negative decimal string such as '12.50'"))
MINOR_UNITS = Codec("minor units", _uint_check)
UINT = MINOR_UNITS
BOOL = Codec("bool", _bool_check)
HS_CODE = Codec("hs code", _pattern_check(_HS_RE, "a 6, 8 or 10 digit HS code"))
UNIT = Codec("unit", _pattern_check(_UNIT_RE, "a UN/ECE Recommendation 20 unit code"))
KEY32 = Codec("public key", _bytes_check(32))
BYTES16 = Codec("16 bytes", _bytes_check(16))


def one_of(*choices: str) -> Codec:
    """A text field restricted to ``choices``."""
    allowed = frozenset(choices)

    def check(v: Any, where: str) -> Any:
        if type(v) is not str or v not in allowed:
            raise _fail(where, f"expected one of {', '.join(choices)}, got {v!r:.60}")
        return v
    return Codec("one of " + "|".join(choices), check)


LOA = one_of(*LOA_ORDER)


def tuple_of(inner: Codec, *, min_len: int = 0, max_len: int = 1000, unique: bool = False) -> Codec:
    """An array field: a tuple in Python, each element checked by ``inner``."""

    def check(v: Any, where: str) -> Any:
        if type(v) is not tuple:
            raise _fail(where, f"expected a sequence, got {type(v).__name__}")
        if not min_len <= len(v) <= max_len:
            raise _fail(where, f"expected {min_len} to {max_len} elements, got {len(v)}")
        for i, x in enumerate(v):
            inner.check(x, f"{where}[{i}]")
        if unique and len(set(v)) != len(v):
            raise _fail(where, "elements must be unique")
        return v

    def decode(v: Any, where: str) -> Any:
        if type(v) is not list:
            raise _fail(where, f"expected an array, got {type(v).__name__}")
        dec = inner.decode
        return tuple(dec(x, f"{where}[{i}]") for i, x in enumerate(v))

    def encode(v: Any) -> Any:
        enc = inner.encode
        return [enc(x) for x in v]

    def read(v: Any, where: str) -> Any:
        # decode and check in one pass: each element is read (decoded and checked) once.
        if type(v) is not list:
            raise _fail(where, f"expected an array, got {type(v).__name__}")
        if not min_len <= len(v) <= max_len:
            raise _fail(where, f"expected {min_len} to {max_len} elements, got {len(v)}")
        rd = inner.read
        out = tuple([rd(x, f"{where}[{i}]") for i, x in enumerate(v)])
        if unique and len(set(out)) != len(out):
            raise _fail(where, "elements must be unique")
        return out

    return Codec(f"array of {inner.name}", check, decode, encode, read)


def record(cls: type[Record]) -> Codec:
    """A nested map field holding an instance of ``cls``."""

    def check(v: Any, where: str) -> Any:
        if type(v) is not cls:
            raise _fail(where, f"expected {cls.__name__}, got {type(v).__name__}")
        return v

    # from_map returns a checked instance of cls, so reading needs no check after it.
    return Codec(cls.__name__, check, lambda v, where: cls.from_map(v, where), lambda v: v.to_map(), cls.from_map)


class Record:
    """Mixin giving a frozen dataclass schema-driven validation and map conversion.

    Subclasses set ``SCHEMA``: a tuple of :class:`Field` in attribute order.
    Optional fields default to None and are omitted from the map when None.
    When a subclass is created, its schema is compiled into two plans, one
    for construction (``_PLAN``: per field the key, check, whether it is
    required, and the ``Class.field`` name errors use) and one for
    :meth:`from_map` (``_READ_PLAN``: the key, reader (:attr:`Codec.read`),
    the slot's setter and the name), so the success path formats no strings.
    """

    __slots__ = ()
    SCHEMA: ClassVar[tuple[Field, ...]] = ()
    _PLAN: ClassVar[tuple[tuple[str, Callable[[Any, str], Any], bool, str], ...]]
    _READ_PLAN: ClassVar[tuple[tuple[str, Callable[[Any, str], Any], Callable[[Any, Any], None], str], ...]]
    _KEYSET: ClassVar[frozenset[str]]
    _DEFAULTS: ClassVar[dict[str, Any]]
    _CROSS_CHECKS: ClassVar[bool]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # dataclass(slots=True) re-creates the class with __dataclass_fields__ and
        # its slots set; this runs again then, and only that class is ever used.
        final = "__dataclass_fields__" in cls.__dict__
        cls._PLAN = tuple((f.key, f.codec.check, f.required, f"{cls.__name__}.{f.key}") for f in cls.SCHEMA)
        cls._READ_PLAN = tuple((f.key, f.codec.read, _setter(cls, f.key), f"{cls.__name__}.{f.key}")
                               for f in cls.SCHEMA)
        cls._KEYSET = frozenset(f.key for f in cls.SCHEMA)
        fields = dataclasses.fields(cls) if final else ()  # type: ignore[arg-type]
        cls._DEFAULTS = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
        cls._CROSS_CHECKS = cls._validate is not Record._validate

    def __post_init__(self) -> None:
        for key, check, required, where in self._PLAN:
            v = getattr(self, key)
            if v is None:
                if required:
                    raise _fail(where, "is required")
            else:
                check(v, where)
        self._validate()

    def _validate(self) -> None:
        """Cross-field rules; subclasses override."""

    def to_map(self) -> dict[str, Any]:
        """The CBOR map form (text keys; None fields omitted)."""
        out: dict[str, Any] = {}
        for f in self.SCHEMA:
            v = getattr(self, f.key)
            if v is not None:
                out[f.key] = f.codec.encode(v)
        return out

    @classmethod
    def from_map(cls, m: Any, where: str = "") -> Any:
        """Build an instance from its CBOR map form, refusing unknown and missing keys.

        Each field is read once, with the same checks as construction
        (:attr:`Codec.read`); the instance is then filled in directly rather
        than through ``__init__`` and ``__post_init__``, which would check again.

        Raises:
            DecodeError: not a map, an unknown key, a missing required key,
                or a value that fails its field's check.
        """
        if type(m) is not dict:
            raise _fail(where or cls.__name__, f"expected a map, got {type(m).__name__}")
        if not m.keys() <= cls._KEYSET:
            unknown = sorted(map(repr, m.keys() - cls._KEYSET))
            raise _fail(where or cls.__name__, f"unknown field {unknown[0]:.60}")
        obj = _new(cls)
        get = m.get
        for key, read, put, field_where in cls._READ_PLAN:
            v = get(key, _ABSENT)
            if v is _ABSENT:
                v = cls._DEFAULTS.get(key, _ABSENT)
                if v is _ABSENT:
                    missing = [f.key for f in cls.SCHEMA if f.key not in m and f.key not in cls._DEFAULTS]
                    raise _fail(where or cls.__name__, f"missing required field(s) {', '.join(missing)}")
            elif v is None:
                raise _fail(field_where, "null is not allowed; omit the field instead")
            else:
                v = read(v, field_where)
            put(obj, v)
        if cls._CROSS_CHECKS:
            obj._validate()
        return obj


def _setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """A function setting attribute ``name`` of a ``cls`` instance, frozen or not."""
    slot = getattr(cls, name, None)
    if type(slot) is types.MemberDescriptorType:
        return slot.__set__  # type: ignore[no-any-return]  # the slot itself: no attribute lookup
    return lambda obj, v: object.__setattr__(obj, name, v)


_new = object.__new__


_ABSENT = object()


# --------------------------------------------------------------------------- shared value types


@dataclass(frozen=True, slots=True)
class Digest(Record):
    """A document digest: hash algorithm name and digest bytes of the matching size."""

    alg: str
    value: bytes

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("alg", one_of(*HASH_SIZES)),
        Field("value", Codec("digest bytes", _any_bytes_check)),
    )

    def _validate(self) -> None:
        if len(self.value) != HASH_SIZES[self.alg]:
            raise _fail("Digest.value", f"{self.alg} digest must be {HASH_SIZES[self.alg]} bytes, "
                        f"got {len(self.value)}")


@dataclass(frozen=True, slots=True)
class Party(Record):
    """A trader or body named on a document: name, country and optional identifier and address."""

    name: str
    country: str
    id: str | None = None
    address: str | None = None

    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("name", TEXT), Field("country", COUNTRY),
        Field("id", SHORT_TEXT, False), Field("address", TEXT, False),
    )


@dataclass(frozen=True, slots=True)
class Money(Record):
    """An amount in integer minor units of ``currency`` (ISO 4217 exponent: 100 = USD 1.00, VND 100)."""

    amount: int
    currency: str

    SCHEMA: ClassVar[tuple[Field, ...]] = (Field("amount", MINOR_UNITS), Field("currency", CURRENCY))


@dataclass(frozen=True, slots=True)
class Quantity(Record):
    """A quantity as a decimal string with a UN/ECE Recommendation 20 unit code (``KGM``, ``TNE``)."""

    value: str
    unit: str

    SCHEMA: ClassVar[tuple[Field, ...]] = (Field("value", DECIMAL), Field("unit", UNIT))
