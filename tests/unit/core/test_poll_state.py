"""Poll state on the cursors topic: versioned, and the cursors of earlier releases still read."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from adapters.core.pagination import PageRequest
from adapters.core.poll_state import (
    LIST_VERSION,
    ListingPass,
    ListState,
    StateError,
    WatchState,
    decode_list_state,
    decode_watch_state,
    encode_state,
)

T = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_a_cursor_written_by_the_previous_release_is_read_as_a_listing_state() -> None:
    # Byte for byte what the previous poller committed: msgspec's Cursor(mark, seen).
    old = b'{"mark":"2024-03-01T12:00:00Z","seen":{"7":"2024-03-01T12:00:00Z"}}'
    state = decode_list_state(old)
    assert state == ListState(mark=T, seen={"7": T})
    assert state.v == LIST_VERSION and state.listing is None
    assert decode_list_state(b"{}") == ListState()


def test_a_listing_state_survives_json_with_a_pass_under_way() -> None:
    state = ListState(
        mark=T,
        seen={"1": T},
        listing=ListingPass(
            started=T,
            floor=T,
            next=PageRequest("/p", {"page": "2"}),
            index=2,
            history={1: PageRequest("/p", {"page": "1"})},
            total=5,
        ),
    )
    raw = encode_state(state)
    assert msgspec.json.decode(raw)["kind"] == "list"
    assert decode_list_state(raw) == state


def test_a_newer_version_is_refused_not_misread() -> None:
    with pytest.raises(StateError, match="version 3"):
        decode_list_state(b'{"kind":"list","v":3,"mark":null}')


def test_a_state_of_another_kind_is_refused() -> None:
    with pytest.raises(StateError, match="kind 'watch'"):
        decode_list_state(encode_state(WatchState()))
    with pytest.raises(StateError, match="kind 'list'"):
        decode_watch_state(encode_state(ListState()))


def test_a_watch_state_survives_json() -> None:
    state = WatchState(tracked={"a": "digest", "b": None}, cursor=1)
    assert decode_watch_state(encode_state(state)) == state
