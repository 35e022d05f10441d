"""CMO's due-date rule, as pure functions: a calendar day becomes an instant in UTC.

The document: "dueDate must be a timestamp in ISO UTC format. The timestamp value should point
to the end of the desired Action Due Date (to anywhere within the last second of that date to
be exact). This considers the Time Zone configured for the company (in Admin / Business
Rules section)", with the vector India (UTC+05:30), 22 July 2021 → `2021-07-22T18:29:59.997Z`.

So a day D becomes the instant at which D+1 begins in the company's zone, minus 3 ms. Taking
the next day's start (not "D at 23:59:59.997 local") keeps it right on days that are 23 or 25
hours long, and on days whose midnight falls into a DST gap. Why .997 and not .999: the
document's own vector ends in .997, the last value SQL Server's `datetime` (1/300 s steps)
stores without rounding up into the next day.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.UTC
# Before the next day begins: the document's `…:59.997Z`.
END_OF_DAY_MARGIN = dt.timedelta(milliseconds=3)


class InvalidTimeZone(ValueError):
    """A configured time zone name that is not an IANA zone zoneinfo knows."""


def company_zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (e.g. `Asia/Kolkata`); raises `InvalidTimeZone` with the reason."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: a malformed key such as "../x" or ""; OSError: an unreadable tz file.
        raise InvalidTimeZone(
            f"{name!r} is not an IANA time zone (e.g. Asia/Kolkata, Europe/Berlin, "
            "America/New_York)"
        ) from None


def time_zone_problem(name: str | None) -> str | None:
    """Why `name` cannot be the company's time zone, or None (also for no zone at all)."""
    if name is None:
        return None
    try:
        company_zone(name)
    except InvalidTimeZone as exc:
        return str(exc)
    return None


def start_of_day(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The first instant (in UTC) at which the local date in `zone` is `day`.

    Normally that is local midnight. Where midnight is ambiguous (clocks go back over it) it
    is the first of the two; where it does not exist (clocks jump forward over it, as in
    America/Sao_Paulo until 2019) it is the instant of the jump, found by bisection (zone
    transitions fall on whole seconds).
    """
    wall = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    one, other = (wall.replace(fold=f).astimezone(UTC) for f in (0, 1))
    lo, hi = min(one, other), max(one, other)
    if _local_date(lo, zone) >= day:
        return lo
    # In a gap: `lo` is still on the day before, `hi` after the jump.
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _local_date(dt.datetime.fromtimestamp(mid, UTC), zone) >= day:
            hi_s = mid
        else:
            lo_s = mid
    return dt.datetime.fromtimestamp(hi_s, UTC)


def end_of_day(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """CMO's due instant for `day` in `zone`, in UTC: 3 ms before the next day begins."""
    return start_of_day(day + dt.timedelta(days=1), zone) - END_OF_DAY_MARGIN


def format_due_date(instant: dt.datetime) -> str:
    """`instant` as CMO writes due dates: UTC, milliseconds, `Z` (`2021-07-22T18:29:59.997Z`).

    Sub-millisecond digits are cut, never rounded: rounding could carry `…59.9999` into the
    next day. A naive datetime is refused (it names no instant).
    """
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("a due date needs a UTC offset (e.g. 2021-07-22T18:29:59.997Z)")
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def due_date_for(day: dt.date, zone: ZoneInfo) -> str:
    """A `dueOn` day as CMO's `dueDate`: the last millisecond CMO keeps of that day, in UTC."""
    return format_due_date(end_of_day(day, zone))


def in_last_second(instant: dt.datetime, zone: ZoneInfo) -> bool:
    """Whether `instant` lies in the last second of a day in `zone`, as the document asks."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        return False
    day = _local_date(instant, zone)
    next_start = start_of_day(day + dt.timedelta(days=1), zone)
    return next_start - dt.timedelta(seconds=1) <= instant.astimezone(UTC) < next_start


def _local_date(instant: dt.datetime, zone: ZoneInfo) -> dt.date:
    return instant.astimezone(zone).date()


_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|z|[+-]\d{2}:\d{2})$")


def parse_timestamp(text: str) -> dt.datetime:
    """An ISO 8601 timestamp with `Z` or an offset, any number of fraction digits (.NET
    writes seven): cut, never rounded, to microseconds. Raises ValueError otherwise."""
    match = _TIMESTAMP.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not an ISO 8601 timestamp with a UTC offset "
            "(e.g. 2021-07-22T18:29:59.997Z)"
        )
    whole, fraction, offset = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    offset = "+00:00" if offset in ("Z", "z") else offset
    return dt.datetime.fromisoformat(f"{whole}.{micro}{offset}")


def as_sent(text: str) -> str:
    """A given `dueDate` as it goes to CMO: as given when it is in UTC (`Z`, `+00:00`),
    else in UTC with milliseconds (cut, so the due day never moves)."""
    stripped = text.strip()
    instant = parse_timestamp(stripped)
    if instant.utcoffset() == dt.timedelta(0):
        return stripped
    return format_due_date(instant)
