"""Idempotency ledger: payload hashes and entry encoding."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.core.ledger import LedgerEntry, decode_entry, encode_entry, payload_hash

T = "workbridge.moco.activity.create"


def test_hash_is_stable_under_key_order() -> None:
    a = {"date": "2024-01-01", "project_id": 1, "nested": {"x": 1, "y": [1, 2]}}
    b = {"nested": {"y": [1, 2], "x": 1}, "project_id": 1, "date": "2024-01-01"}
    assert payload_hash(T, a) == payload_hash(T, b)
    assert len(payload_hash(T, a)) == 64


def test_hash_differs_with_type_or_data() -> None:
    data = {"project_id": 1}
    h = payload_hash(T, data)
    assert h != payload_hash("workbridge.moco.activity.update", data)
    assert h != payload_hash(T, {"project_id": 2})
    assert h != payload_hash(T, {"project_id": 1, "hours": 1})
    assert payload_hash(T, {"l": [1, 2]}) != payload_hash(T, {"l": [2, 1]})  # lists keep order


def test_entry_round_trip() -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    entry = LedgerEntry(
        state="done",
        command_id="c1",
        command_type=T,
        payload_hash="abc",
        at=at,
        result={"status": "succeeded"},
    )
    assert decode_entry(encode_entry(entry)) == entry


def test_inflight_entry_omits_result() -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    entry = LedgerEntry(state="inflight", command_id="c1", command_type=T, payload_hash="h", at=at)
    raw = encode_entry(entry)
    assert b"result" not in raw
    assert decode_entry(raw).result is None
