"""``GET /logs/{member}/state``: values of a log's state map with their proofs (specs/api.md A.13).

A light verifier asks one node for the state keys it needs of one log and gets, in one CBOR answer,
the checkpoint the answers rest on (with every cosignature the node holds), each key's value or its
absence with a proof against that checkpoint's state root (specs/state.md S.3), and the entries the
values list. It trusts nothing here: it checks the checkpoint's signatures and finality, every proof,
and every entry against the leaf hash its value lists.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ledger import cbor
from ledger.errors import DecodeError
from ledger.memberlog import MemberLog
from ledger.state import StateKey, StateValue
from node.middleware import HttpRefusal

__all__ = ["MAX_ENTRIES", "MAX_KEYS", "NotAtCheckpoint", "parse_keys", "state_answer"]

#: Most keys one request may ask for, and most entries one answer carries (spec A.13).
MAX_KEYS = 16
MAX_ENTRIES = 256


class NotAtCheckpoint(HttpRefusal):
    """The node's state of the log is at a size it holds no checkpoint for yet: 503, try again shortly."""

    status = 503
    kind = "not_at_checkpoint"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


def parse_keys(values: list[str]) -> list[StateKey]:
    """The ``key`` query parameters: unpadded base64url of each state key's CBOR (spec A.13).

    Raises:
        DecodeError: none, too many, or one that is not a state key (the message names it).
    """
    if not values:
        raise DecodeError("give at least one state key: ?key=<base64url of the key's CBOR>")
    if len(values) > MAX_KEYS:
        raise DecodeError(f"at most {MAX_KEYS} state keys per request, not {len(values)}")
    keys = []
    for i, text in enumerate(values):
        if len(text) > 512:
            raise DecodeError(f"state key {i + 1} is longer than 512 characters")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError) as e:
            raise DecodeError(f"state key {i + 1} is not base64url: {e}") from e
        try:
            keys.append(StateKey.decode(raw))
        except DecodeError as e:
            raise DecodeError(f"state key {i + 1}: {e}") from e
    return keys


def state_answer(lg: MemberLog, keys: list[StateKey]) -> bytes:
    """The CBOR answer of spec A.13 for ``keys`` of the log (run on the host's thread).

    Raises:
        NotAtCheckpoint: no checkpoint is stored at the size the state is at (the owner signs one within
            its checkpoint interval; a replica holds one once the next is witnessed).
        DecodeError: the values list more than :data:`MAX_ENTRIES` entries together.
    """
    member = lg.member_id
    size, proven = lg.prove_states([k.path for k in keys])
    if size == 0 or lg.storage.checkpoint(member, size) is None:
        raise NotAtCheckpoint(f"log {member} is at size {size}, for which this node holds no checkpoint yet;"
                              " try again in a moment")
    wanted: set[int] = set()
    answers: list[list[Any]] = []
    for k, (value, proof) in zip(keys, proven):
        answers.append([k.encode(), value, proof.to_cbor()])
        if value is not None:
            wanted.update(i for i, _ in StateValue.decode(value).entries)
    if len(wanted) > MAX_ENTRIES:
        raise DecodeError(f"the values asked for list {len(wanted)} entries; at most {MAX_ENTRIES} per answer:"
                          " ask for fewer keys at once")
    entries = [[i, lg.read(i, i + 1)[0]] for i in sorted(wanted)]
    return cbor.encode({"size": size, "checkpoint": lg.served_note(size), "answers": answers, "entries": entries})

