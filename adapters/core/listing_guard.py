"""Judging one page of a listing pass: could a record have slipped past the pages read?

An offset-paged listing (page=N) that changes while it is read shifts records between pages.
A record that shifts onto a page already read is never seen in this pass. Which changes do
that depends on the order:

- Newest first by the replication key, every record that changes or appears goes to the
  front, which is already read: it shifts the rest towards later pages, so nothing is skipped
  (it is read again: the same id twice). Only a deletion shifts records back across the page
  boundary, and then the vendor's total drops by at least as many. So a drop is answered by
  re-reading as many pages back as it could reach (a rewind), and a pass whose every drop
  was rewound has read every record that existed when it started and did not change.
- In any other order (oldest first, by id, or an order the vendor chose), a change can shift
  records back unseen. Such a pass moves the cursor only if nothing suggested a change while
  it was paged ("quiet"): same total on every page, no id twice, no record newer than the
  listing's start. Otherwise the next pass reads the same range again, and records published
  meanwhile are in `seen`, so nothing repeats.

A vendor that says it lists newest first is checked against what it sends: one record older
than the one before it and the pass is judged by the second rule. What cannot be checked is
assumed: records with equal change times keep their order between two requests unless they
change (a vendor that reshuffles ties from one request to the next could hide one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from adapters.core.poll_state import ListingPass


@dataclass(frozen=True)
class Verdict:
    """What one page says about the pass."""

    # Why the pass may have skipped a record (None: it cannot have, so far).
    unsafe: str | None
    quiet: bool
    # Page number to read next instead of the vendor's next page (a rewind), if any.
    rewind_to: int | None = None


def judge(
    listing: ListingPass,
    keyed: list[tuple[datetime, str]],
    total: int | None,
    *,
    newest_first: bool,
    max_rewinds: int,
) -> Verdict:
    """Judge the page `listing.index` with its records' (change time, id) in listing order.

    `listing` is the pass as it stood before this page. The first page of a pass is never
    unsafe: records only slip between pages.
    """
    unsafe = listing.unsafe
    quiet = listing.quiet and not any(ts >= listing.started for ts, _ in keyed)
    read = {**listing.previous, **listing.recent}
    # A record pushed over from the page before comes again, newer than that page's last.
    fresh = [(ts, rid) for ts, rid in keyed if read.get(rid) != ts]
    if newest_first and unsafe is None and not _descending(listing.last_key, fresh):
        unsafe = "the vendor did not list newest first"
    if listing.index == 1 and listing.rewinds == 0:
        return Verdict(unsafe, quiet)

    repeated = [(ts, rid) for ts, rid in keyed if rid in read]
    if repeated:
        quiet = False
    if total is None or listing.total is None:
        # Without a total a deletion is invisible: only a quiet pass can move the cursor.
        return Verdict(unsafe or "the vendor gives no total", False)
    change = total - listing.total
    if change != 0:
        quiet = False
    if change >= 0:
        return Verdict(unsafe, quiet)

    drop = -change
    back = math.ceil(drop / max(listing.page_len, len(keyed), 1))
    target = max(1, listing.index - back)
    if listing.rewinds >= max_rewinds:
        return Verdict(unsafe or f"the total dropped again after {max_rewinds} rewinds", False)
    if target not in listing.history:
        return Verdict(unsafe or f"a drop of {drop} reaches past the pages kept", False)
    return Verdict(unsafe, False, rewind_to=target)


def _descending(previous: datetime | None, keyed: list[tuple[datetime, str]]) -> bool:
    last = previous
    for ts, _ in keyed:
        if last is not None and ts > last:
            return False
        last = ts
    return True
