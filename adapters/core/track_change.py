"""One command's word on one id a watch follows (the tracking topic's record; tracking.py)."""

from __future__ import annotations

import msgspec

TRACKING_VERSION = 1


class TrackChange(msgspec.Struct, frozen=True, kw_only=True):
    """One command's word on one watched id."""

    id: str
    # True: the watch follows the id (a create, a track command); False: it drops it (an
    # untrack command); None: as it is (an update's echo does not start or stop a watch).
    tracked: bool | None = True
    # The command whose change the watch's next read of the id will see (its echo).
    caused_by: str | None = None
    # False while the command's call may still be on its way (written with its in-flight
    # mark): a read that shows no change yet does not use the echo up.
    settled: bool = True
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
