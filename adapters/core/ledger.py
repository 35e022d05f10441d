"""The idempotency ledger: one compacted record per idempotency key, beside its commands.

The ledger topic has the commands topic's partition count and an entry is written to the
partition its command came from, so the replica that owns a command partition owns the
ledger entries of every command on it, and restores them on assignment.
"""

from __future__ import annotations

import hashlib
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
