"""Judging a page of a listing pass: when a record may have slipped between pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from adapters.core.listing_guard import judge
from adapters.core.pagination import PageRequest
from adapters.core.poll_state import ListingPass

T = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def page(n: int) -> PageRequest:
    return PageRequest("/projects", {"page": str(n)})


def listing(**changes: Any) -> ListingPass:
    """The pass as it stood before page 2: page 1 held ids 9, 8, 7 (newest first)."""
    base = ListingPass(
        started=at(100),
        floor=None,
        next=page(2),
        index=2,
        history={1: page(1)},
        total=6,
        page_len=3,
        recent={"9": at(9), "8": at(8), "7": at(7)},
        last_key=at(7),
    )
    return msgspec.structs.replace(base, **changes)


def keyed(*pairs: tuple[float, str]) -> list[tuple[datetime, str]]:
    return [(at(s), rid) for s, rid in pairs]


def test_the_first_page_cannot_have_skipped_anything() -> None:
    first = listing(index=1, history={}, total=None, recent={}, last_key=None)
    verdict = judge(first, keyed((9, "9"), (8, "8")), 6, newest_first=True, max_rewinds=3)
    assert verdict.unsafe is None and verdict.rewind_to is None


def test_newest_first_and_an_unchanged_total_is_safe() -> None:
    verdict = judge(
        listing(), keyed((6, "6"), (5, "5"), (4, "4")), 6, newest_first=True, max_rewinds=3
    )
    assert verdict.unsafe is None and verdict.quiet and verdict.rewind_to is None


def test_a_drop_of_the_total_rewinds_as_many_pages_as_it_reaches() -> None:
    verdict = judge(listing(), keyed((5, "5"), (4, "4")), 5, newest_first=True, max_rewinds=3)
    assert verdict.rewind_to == 1 and verdict.unsafe is None and not verdict.quiet
    three_back = listing(index=4, history={1: page(1), 2: page(2), 3: page(3)}, total=20)
    verdict = judge(three_back, keyed((1, "1")), 13, newest_first=True, max_rewinds=3)
    assert verdict.rewind_to == 1  # a drop of 7 reaches back ceil(7 / 3) = 3 pages


def test_a_drop_reaching_past_the_pages_kept_is_unsafe() -> None:
    kept = listing(index=6, history={4: page(4), 5: page(5)}, total=20)
    verdict = judge(kept, keyed((1, "1")), 10, newest_first=True, max_rewinds=3)
    assert verdict.rewind_to is None and verdict.unsafe is not None


def test_too_many_rewinds_are_unsafe() -> None:
    verdict = judge(listing(rewinds=3), keyed((5, "5")), 5, newest_first=True, max_rewinds=3)
    assert verdict.rewind_to is None and "rewinds" in (verdict.unsafe or "")


def test_an_older_record_after_a_newer_one_is_not_newest_first() -> None:
    verdict = judge(listing(), keyed((6, "6"), (8.5, "x")), 6, newest_first=True, max_rewinds=3)
    assert verdict.unsafe == "the vendor did not list newest first"
    across_pages = judge(listing(), keyed((7.5, "x")), 6, newest_first=True, max_rewinds=3)
    assert across_pages.unsafe == "the vendor did not list newest first"


def test_an_id_twice_newest_first_is_a_push_from_the_front() -> None:
    # Records added (or moved) in front push 8 and 7 onto page 2: read again, none skipped.
    pushed = keyed((8, "8"), (7, "7"), (6, "6"))
    for total in (8, 6):  # added, or moved from a later page (the total stays)
        verdict = judge(listing(), pushed, total, newest_first=True, max_rewinds=3)
        assert verdict.unsafe is None and not verdict.quiet and verdict.rewind_to is None


def test_without_a_total_a_deletion_cannot_be_seen() -> None:
    verdict = judge(listing(), keyed((6, "6")), None, newest_first=True, max_rewinds=3)
    assert verdict.unsafe == "the vendor gives no total" and not verdict.quiet


def test_a_record_newer_than_the_listings_start_means_not_quiet() -> None:
    first = listing(index=1, history={}, total=None, recent={}, last_key=None)
    verdict = judge(first, keyed((101, "new")), 6, newest_first=False, max_rewinds=3)
    assert verdict.unsafe is None and not verdict.quiet


def test_in_any_other_order_changes_only_make_the_pass_not_quiet() -> None:
    moved = judge(listing(), keyed((1, "1"), (9, "9")), 6, newest_first=False, max_rewinds=3)
    assert moved.unsafe is None and not moved.quiet  # 9 again: the listing moved
    grew = judge(listing(), keyed((1, "1")), 7, newest_first=False, max_rewinds=3)
    assert not grew.quiet
    still = judge(listing(), keyed((1, "1")), 6, newest_first=False, max_rewinds=3)
    assert still.quiet
