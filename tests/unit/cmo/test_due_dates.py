"""CMO's due-date rule: a day becomes the last millisecond CMO keeps of it, in UTC."""

from __future__ import annotations

import datetime as dt

import pytest

from adapters.cmo.due_dates import (
    InvalidTimeZone,
    company_zone,
    due_date_for,
    end_of_day,
    format_due_date,
    in_last_second,
    start_of_day,
    time_zone_problem,
)

UTC = dt.UTC


def due(zone: str, day: str) -> str:
    return due_date_for(dt.date.fromisoformat(day), company_zone(zone))


def test_the_documents_vector() -> None:
    # "India Standard Time - (UTC+05:30) ... for July 22nd, 2021 ... 2021-07-22T18:29:59.997Z"
    assert due("Asia/Kolkata", "2021-07-22") == "2021-07-22T18:29:59.997Z"


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        # Berlin, spring forward (23-hour day): the day ends at 24:00 CEST = 22:00 UTC.
        ("Europe/Berlin", "2021-03-27", "2021-03-27T22:59:59.997Z"),
        ("Europe/Berlin", "2021-03-28", "2021-03-28T21:59:59.997Z"),
        # Berlin, fall back (25-hour day): ends at 24:00 CET = 23:00 UTC.
        ("Europe/Berlin", "2021-10-30", "2021-10-30T21:59:59.997Z"),
        ("Europe/Berlin", "2021-10-31", "2021-10-31T22:59:59.997Z"),
        # New York: the change is at 02:00 local, the day's end is in the new offset.
        ("America/New_York", "2021-03-13", "2021-03-14T04:59:59.997Z"),
        ("America/New_York", "2021-03-14", "2021-03-15T03:59:59.997Z"),
        ("America/New_York", "2021-11-07", "2021-11-08T04:59:59.997Z"),
        # Half- and quarter-hour offsets.
        ("Asia/Kolkata", "2021-01-01", "2021-01-01T18:29:59.997Z"),
        ("Asia/Kathmandu", "2021-01-01", "2021-01-01T18:14:59.997Z"),
        ("America/St_Johns", "2021-07-01", "2021-07-02T02:29:59.997Z"),
        # Adelaide (+10:30 → +09:30) on the day its DST ends.
        ("Australia/Adelaide", "2021-04-04", "2021-04-04T14:29:59.997Z"),
        ("UTC", "2021-07-22", "2021-07-22T23:59:59.997Z"),
    ],
)
def test_the_last_millisecond_of_a_day(zone: str, day: str, expected: str) -> None:
    assert due(zone, day) == expected


def test_a_dst_day_is_as_long_as_it_is() -> None:
    berlin = company_zone("Europe/Berlin")
    for day, hours in (("2021-03-28", 23), ("2021-10-31", 25), ("2021-07-01", 24)):
        d = dt.date.fromisoformat(day)
        length = end_of_day(d, berlin) - end_of_day(d - dt.timedelta(days=1), berlin)
        assert length == dt.timedelta(hours=hours), day


def test_a_midnight_that_does_not_exist() -> None:
    # São Paulo, 4 Nov 2018: clocks jumped from 00:00 to 01:00, so the day began at 01:00
    # (-02:00) = 03:00 UTC, and 3 November ended just before.
    sao_paulo = company_zone("America/Sao_Paulo")
    start = start_of_day(dt.date(2018, 11, 4), sao_paulo)
    assert start == dt.datetime(2018, 11, 4, 3, tzinfo=UTC)
    assert due("America/Sao_Paulo", "2018-11-03") == "2018-11-04T02:59:59.997Z"


def test_a_midnight_that_comes_twice_is_the_day_s_second_end() -> None:
    # São Paulo, 17 Feb 2019: at 00:00 (-02:00) clocks went back to 23:00 of the 16th; the
    # 17th began at 00:00 -03:00 = 03:00 UTC.
    assert due("America/Sao_Paulo", "2019-02-16") == "2019-02-17T02:59:59.997Z"


def test_the_end_is_the_last_millisecond_there() -> None:
    zone = company_zone("Europe/Berlin")
    for day in (dt.date(2021, 3, 28), dt.date(2021, 10, 31), dt.date(2024, 2, 29)):
        end = end_of_day(day, zone)
        assert end.astimezone(zone).date() == day
        assert (end + dt.timedelta(milliseconds=3)).astimezone(zone).date() == day + dt.timedelta(
            days=1
        )
        assert end.astimezone(zone).time() == dt.time(23, 59, 59, 997000)
        assert in_last_second(end, zone)


def test_format_cuts_to_milliseconds_in_utc() -> None:
    assert format_due_date(dt.datetime(2021, 7, 22, 18, 29, 59, 997000, UTC)) == (
        "2021-07-22T18:29:59.997Z"
    )
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert format_due_date(dt.datetime(2021, 7, 22, 1, 2, 3, tzinfo=plus_two)) == (
        "2021-07-21T23:02:03.000Z"
    )
    # Cut, not rounded: .9999 stays in its second (and its day).
    assert format_due_date(dt.datetime(2021, 7, 22, 23, 59, 59, 999900, UTC)) == (
        "2021-07-22T23:59:59.999Z"
    )
    with pytest.raises(ValueError, match="UTC offset"):
        format_due_date(dt.datetime(2021, 7, 22, 12))


def test_in_last_second() -> None:
    kolkata = company_zone("Asia/Kolkata")
    assert in_last_second(dt.datetime(2021, 7, 22, 18, 29, 59, tzinfo=UTC), kolkata)
    assert in_last_second(dt.datetime(2021, 7, 22, 18, 29, 59, 999999, tzinfo=UTC), kolkata)
    assert not in_last_second(dt.datetime(2021, 7, 22, 18, 29, 58, 999999, tzinfo=UTC), kolkata)
    assert not in_last_second(dt.datetime(2021, 7, 22, 18, 30, tzinfo=UTC), kolkata)
    # The document's own example is fine for a company in UTC+10, not for one in UTC.
    example = dt.datetime(2021, 7, 2, 13, 59, 59, 997000, UTC)
    assert in_last_second(example, company_zone("Australia/Brisbane"))
    assert not in_last_second(example, company_zone("UTC"))
    assert not in_last_second(dt.datetime(2021, 7, 2, 13, 59, 59), kolkata)


@pytest.mark.parametrize(
    "name", ["Not/AZone", "", "../etc/passwd", "Asia/Kolkata ", "America", "zone.tab"]
)
def test_an_invalid_zone(name: str) -> None:
    with pytest.raises(InvalidTimeZone, match="not an IANA time zone"):
        company_zone(name)
    assert time_zone_problem(name) is not None


def test_zone_problem_of_a_valid_zone_or_none() -> None:
    assert time_zone_problem("Asia/Kolkata") is None
    assert time_zone_problem(None) is None
