"""JSON views of registry records for the HTTP API (specs/api.md A.12).

Dataclasses become objects with their field names, byte strings become
lower-case hex, tuples become arrays. Fields marked ``repr=False`` (internal
caches) are left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def to_json(value: Any) -> Any:
    """Convert a record (or a tuple of them) to JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, frozenset, set)):
        return [to_json(v) for v in value]
    return value
