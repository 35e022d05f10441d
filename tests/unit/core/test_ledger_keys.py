"""Ledger record keys: the worker's own records and idempotency keys never share a key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.core.ledger import LedgerEntry, answered_record, key_record, read_ledger

AT = datetime(2026, 1, 2, tzinfo=UTC)


def entry(command_id: str, payload_hash: str = "h" * 64) -> LedgerEntry:
    return LedgerEntry(
        state="done", command_id=command_id, command_type="t", payload_hash=payload_hash, at=AT
    )


@pytest.mark.parametrize(
    "key", ["k", "answered/c1", "\x00answered/c1", "\x00", "\x00\x00x", "ü/\x00"]
)
def test_no_idempotency_key_maps_onto_an_answered_record(key: str) -> None:
    assert key_record(key) != answered_record("c1")
    assert read_ledger({key_record(key): entry("c9")}).keys == {key: entry("c9")}
    assert read_ledger({key_record(key): entry("c9")}).answered == set()


def test_ordinary_keys_are_stored_as_they_were() -> None:
    assert key_record("order-17") == "order-17"
    assert key_record("answered/c1") == "answered/c1"


def test_answered_records_are_read_back_as_command_ids() -> None:
    state = read_ledger({answered_record("c1"): entry("c1", payload_hash="")})
    assert state.answered == {"c1"}
    assert state.keys == {}


def test_entries_of_the_previous_format_are_read_as_they_were_meant() -> None:
    # Before: `answered/<id>` held both the answered records (no payload hash) and any user
    # key of that shape (always with a payload hash).
    state = read_ledger(
        {
            "answered/c1": entry("c1", payload_hash=""),
            "answered/c2": entry("c7"),
            "k1": entry("c3"),
        }
    )
    assert state.answered == {"c1"}
    assert state.keys == {"answered/c2": entry("c7"), "k1": entry("c3")}
