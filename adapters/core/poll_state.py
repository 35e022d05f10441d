"""Versioned poll-task state: what a change source commits with its events.

Each state is a msgspec struct with its `kind` and version `v`, JSON on the compacted cursors
topic under the task's key. Records written before versions existed (the `{mark, seen}` cursor
of earlier releases) have neither field; they are read as a listing state, mark and seen kept.
A version newer than this release knows is refused rather than misread (a downgrade).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from adapters.core.pagination import PageRequest

LIST_VERSION = 2
WATCH_VERSION = 1


class StateError(Exception):
    """A committed state this release cannot read: of another kind, or of a newer version."""


class _Header(msgspec.Struct):
    kind: str | None = None
    v: int | None = None


class ListingPass(msgspec.Struct, kw_only=True):
    """A listing pass under way: enough to resume it after a restart or at the next cycle."""

    # When the listing started by the vendor's clock (its `Date`), less the clock margin.
    started: datetime
    # The pass's lower bound on the replication key (None: the whole listing).
    floor: datetime | None
    # The request to send next, its page number in the pass, and the last few sent before it
    # (by page number), which a rewind re-reads.
    next: PageRequest
    index: int
    history: dict[int, PageRequest] = msgspec.field(default_factory=dict)
    # The vendor's total on the page read last (None: not given).
    total: int | None = None
    # Most records seen on one page: how many pages a drop of the total reaches back.
    page_len: int = 0
    # Ids read on the last two pages, with their change time: "the same id twice".
    recent: dict[str, datetime] = msgspec.field(default_factory=dict)
    previous: dict[str, datetime] = msgspec.field(default_factory=dict)
    # The replication key of the last record read (to check the vendor's order).
    last_key: datetime | None = None
    # Why this pass may have missed a record (None: it cannot have).
    unsafe: str | None = None
    # Whether nothing seen suggests the listing changed while it was paged.
    quiet: bool = True
    rewinds: int = 0
    # The vendor's paging broke off (a next page without a cursor): never a complete pass.
    broken: bool = False


class ListState(msgspec.Struct, kw_only=True):
    """A list-by-replication-key task: everything changed before `mark` is published.

    `seen` holds the versions published (id -> replication key) from `mark - overlap` on, so
    the overlap re-read repeats nothing; `listing` is a pass under way.
    """

    kind: str = "list"
    v: int = LIST_VERSION
    mark: datetime | None = None
    seen: dict[str, datetime] = msgspec.field(default_factory=dict)
    listing: ListingPass | None = None


class _LegacyCursor(msgspec.Struct):
    mark: datetime | None = None
    seen: dict[str, datetime] = msgspec.field(default_factory=dict)


def decode_list_state(raw: bytes) -> ListState:
    """A committed listing state, including the unversioned cursors of earlier releases."""
    header = msgspec.json.decode(raw, type=_Header)
    if header.v is None and header.kind is None:
        legacy = msgspec.json.decode(raw, type=_LegacyCursor)
        return ListState(mark=legacy.mark, seen=legacy.seen)
    _check(header, "list", LIST_VERSION)
    return msgspec.json.decode(raw, type=ListState)


class WatchState(msgspec.Struct, kw_only=True):
    """A watch over tracked ids (a vendor without a list endpoint).

    `tracked` maps each id to the digest of the content last published (None: not read yet);
    `cursor` is where the round over the ids goes on, so a large set is read a slice at a time.
    """

    kind: str = "watch"
    v: int = WATCH_VERSION
    tracked: dict[str, str | None] = msgspec.field(default_factory=dict)
    cursor: int = 0
    # Per id, what the vendor's mapper keeps of the last read (CMO: the status code).
    facts: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    # Per id, the command whose echo the watch has already looked for (tracking.py).
    echoed: dict[str, str] = msgspec.field(default_factory=dict)
    # Ids the vendor answered 404 for, latest last (bounded): the tracking topic still
    # lists them, and they must not be read again forever.
    gone: list[str] = msgspec.field(default_factory=list)


def decode_watch_state(raw: bytes) -> WatchState:
    """A committed watch state."""
    _check(msgspec.json.decode(raw, type=_Header), "watch", WATCH_VERSION)
    return msgspec.json.decode(raw, type=WatchState)


def encode_state(state: msgspec.Struct) -> bytes:
    """A state as committed to the cursors topic."""
    return msgspec.json.encode(state)


def _check(header: _Header, kind: str, newest: int) -> None:
    if header.kind != kind:
        raise StateError(f"committed state is of kind {header.kind!r}, not {kind!r}")
    if header.v is None or header.v > newest:
        raise StateError(
            f"committed {kind} state has version {header.v}; this release reads up to {newest}"
        )


def pass_floor(state: ListState, overlap: timedelta) -> datetime | None:
    """The lower bound of the pass `state` is in (or starts): None lists everything."""
    if state.listing is not None:
        return state.listing.floor
    return state.mark - overlap if state.mark is not None else None
