"""The idempotency ledger: one compacted record per idempotency key, beside its commands.

The ledger topic has the commands topic's partition count and an entry is written to the
partition its command came from, so the replica that owns a command partition owns the
ledger entries of every command on it, and restores them on assignment (into an index on
local disk, `ledger_store`; this module is the records' format).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec


class LedgerEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What is known about one idempotency key."""

    # `inflight`: the vendor call may have started; `done`: the result is final.
    state: Literal["inflight", "done"]
    command_id: str
    command_type: str
    payload_hash: str
    at: datetime
    result: dict[str, Any] | None = None


def payload_hash(command_type: str, data: Any) -> str:
    """Digest of what a command asks for: same key with another digest is a conflict."""
    canonical = msgspec.json.encode(data, order="sorted")
    return hashlib.sha256(command_type.encode() + b"\x1f" + canonical).hexdigest()


def encode_entry(entry: LedgerEntry) -> bytes:
    """Ledger record value."""
    return msgspec.json.encode(entry)


def decode_entry(raw: bytes) -> LedgerEntry:
    """Ledger record value back into an entry."""
    return msgspec.json.decode(raw, type=LedgerEntry)


# Record keys of the ledger topic. An idempotency key is stored as itself, so entries written
# before the worker's own records had a namespace are read as they were. The worker's own
# records start with NUL, and a user key that starts with NUL is escaped with a second one:
# no idempotency key can produce an answered record's key (`answered/<id>` once did, and
# silenced command <id>). A byte that UTF-8 never produces would do too, but an older
# version, rolled back to, could not decode such a key and would fail to take a partition.
_OWN = "\x00"
_ESCAPED = "\x00\x00"
_ANSWERED = "\x00answered/"
# Before the namespace: answered records were `answered/<command id>`, with an empty
# payload hash, which no entry of an idempotency key has.
_LEGACY_ANSWERED = "answered/"


def key_record(idempotency_key: str) -> str:
    """The ledger record key of an idempotency key's entry."""
    return _ESCAPED + idempotency_key if idempotency_key.startswith(_OWN) else idempotency_key


def answered_record(command_id: str) -> str:
    """The ledger record key saying that a command has its result, though it used no key
    (rejected, conflict, or a repeat of an earlier command's key)."""
    return _ANSWERED + command_id


def legacy_answered_record(command_id: str) -> str:
    """Where an earlier version wrote a command's answered record (read, never written)."""
    return _LEGACY_ANSWERED + command_id


RecordKind = Literal["key", "answered"]


def classify(record_key: str, entry: LedgerEntry) -> tuple[RecordKind, str]:
    """What a ledger record is about: an idempotency key's entry (with the key) or a
    command's answered record (with its id), in the current format and the one before."""
    if record_key.startswith(_ESCAPED):
        return "key", record_key[len(_ESCAPED) :]
    if record_key.startswith(_ANSWERED):
        return "answered", record_key[len(_ANSWERED) :]
    if record_key.startswith(_LEGACY_ANSWERED) and not entry.payload_hash:
        return "answered", record_key[len(_LEGACY_ANSWERED) :]
    return "key", record_key


class LedgerState(msgspec.Struct, kw_only=True):
    """One ledger partition in memory: entries by idempotency key, and the answered ids."""

    keys: dict[str, LedgerEntry] = msgspec.field(default_factory=dict)
    answered: set[str] = msgspec.field(default_factory=set)


def read_ledger(records: Mapping[str, LedgerEntry]) -> LedgerState:
    """The state of a restored ledger partition (latest entry per record key), in the
    current format and in the one before it.

    Holds every entry in memory: the command worker uses `ledger_store` instead; this stays
    for tools, tests and the benchmark's baseline.
    """
    state = LedgerState()
    for record_key, entry in records.items():
        kind, name = classify(record_key, entry)
        if kind == "answered":
            state.answered.add(name)
        else:
            state.keys[name] = entry
    return state
