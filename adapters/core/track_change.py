"""One command's word on one id a watch follows (the tracking topic's record; tracking.py)."""

from __future__ import annotations

import msgspec

TRACKING_VERSION = 1


class TrackChange(msgspec.Struct, frozen=True, kw_only=True):
    """One command's word on one watched id."""

    id: str
    # False: the watch drops the id (an untrack command).
    tracked: bool = True
    # The command whose change the watch's next read of the id will see (its echo).
    caused_by: str | None = None
    v: int = TRACKING_VERSION


def tracking_record(change: TrackChange) -> tuple[bytes, bytes]:
    """The key and value of a change on the tracking topic."""
    return change.id.encode(), msgspec.json.encode(change)


def decode_change(raw: bytes) -> TrackChange | None:
    """A change read back (None for a value this version cannot read: it is skipped)."""
    try:
        return msgspec.json.decode(raw, type=TrackChange)
    except msgspec.DecodeError:
        return None
